#include "backend/cuda/device_sampler.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "backend/cuda/kernels.h"
#include "backend/cuda/sampling_kernels.h"
#include "realizar/error.h"

namespace realizar::cuda {
namespace {

constexpr int64_t kMaxPenaltyWindow = 256;  // penalty entries per row (penalty_last_n up to this)

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) fail("CUDA error in {}: {}", what, cudaGetErrorString(status));
}

struct DeviceFree {
  void operator()(void* p) const { cudaFree(p); }
};
struct HostFree {
  void operator()(void* p) const { cudaFreeHost(p); }
};

template <class T>
std::unique_ptr<T, DeviceFree> device_array(size_t count) {
  void* p = nullptr;
  if (cudaMalloc(&p, std::max<size_t>(count * sizeof(T), 256)) != cudaSuccess) {
    cudaGetLastError();
    fail("CUDA: out of device memory for the sampler ({} bytes)", count * sizeof(T));
  }
  return std::unique_ptr<T, DeviceFree>(static_cast<T*>(p));
}

template <class T>
std::unique_ptr<T, HostFree> pinned_array(size_t count) {
  void* p = nullptr;
  check(cudaMallocHost(&p, std::max<size_t>(count * sizeof(T), 256)), "pinned sampler buffers");
  return std::unique_ptr<T, HostFree>(static_cast<T*>(p));
}

}  // namespace

struct DeviceSampler::Buffers {
  // Inputs, one step's rows: parameters and penalty windows (staged on the host, then uploaded).
  std::unique_ptr<RowSamplingParams, HostFree> params_host;
  std::unique_ptr<RowSamplingParams, DeviceFree> params;
  std::unique_ptr<int32_t, HostFree> penalty_tokens_host, penalty_counts_host;
  std::unique_ptr<int32_t, DeviceFree> penalty_tokens, penalty_counts;
  int64_t penalty_used = 0;
  // Outputs of one pass, then their host copies (kept per step row).
  std::unique_ptr<int32_t, DeviceFree> tokens;
  std::unique_ptr<float, DeviceFree> logprobs, top_logprobs;
  std::unique_ptr<int32_t, DeviceFree> top_ids;
  std::unique_ptr<int32_t, HostFree> tokens_host;
  std::unique_ptr<float, HostFree> logprobs_host, top_logprobs_host;
  std::unique_ptr<int32_t, HostFree> top_ids_host;
  std::unique_ptr<uint8_t, DeviceFree> scratch;
};

DeviceSampler::DeviceSampler(int64_t vocab, int64_t max_rows, int64_t pass_rows)
    : vocab_(vocab), max_rows_(max_rows), pass_rows_(pass_rows), b_(std::make_unique<Buffers>()) {
  const auto rows = static_cast<size_t>(max_rows);
  const size_t penalties = rows * static_cast<size_t>(kMaxPenaltyWindow);
  b_->params_host = pinned_array<RowSamplingParams>(rows);
  b_->params = device_array<RowSamplingParams>(rows);
  b_->penalty_tokens_host = pinned_array<int32_t>(penalties);
  b_->penalty_counts_host = pinned_array<int32_t>(penalties);
  b_->penalty_tokens = device_array<int32_t>(penalties);
  b_->penalty_counts = device_array<int32_t>(penalties);
  const auto pass = static_cast<size_t>(pass_rows);
  b_->tokens = device_array<int32_t>(pass);
  b_->logprobs = device_array<float>(pass);
  b_->top_ids = device_array<int32_t>(pass * kMaxTopLogprobs);
  b_->top_logprobs = device_array<float>(pass * kMaxTopLogprobs);
  b_->tokens_host = pinned_array<int32_t>(rows);
  b_->logprobs_host = pinned_array<float>(rows);
  b_->top_ids_host = pinned_array<int32_t>(rows * kMaxTopLogprobs);
  b_->top_logprobs_host = pinned_array<float>(rows * kMaxTopLogprobs);
  b_->scratch = device_array<uint8_t>(sample_rows_scratch_bytes(pass_rows, vocab));
}

DeviceSampler::~DeviceSampler() = default;

bool DeviceSampler::serves(std::span<const RowSampling> rows) const {
  return std::all_of(rows.begin(), rows.end(), [&](const RowSampling& r) {
    return device_samples(r.params, vocab_) &&
           (!r.params.has_penalties() || r.params.penalty_last_n <= kMaxPenaltyWindow);
  });
}

bool DeviceSampler::wants_logprobs(std::span<const RowSampling> rows) {
  return std::any_of(rows.begin(), rows.end(), [](const RowSampling& r) { return r.top_logprobs >= 0; });
}

void DeviceSampler::upload(std::span<const RowSampling> rows, cudaStream_t stream) {
  if (static_cast<int64_t>(rows.size()) > max_rows_) fail("device sampler: {} rows, room for {}", rows.size(), max_rows_);
  int32_t offset = 0;
  for (size_t r = 0; r < rows.size(); ++r) {
    const RowSampling& row = rows[r];
    const int32_t count = penalty_window(row.params, row.history, vocab_, b_->penalty_tokens_host.get() + offset,
                                         b_->penalty_counts_host.get() + offset);
    b_->params_host.get()[r] = row_sampling_params(row.params, row.position, row.top_logprobs, offset, count);
    offset += count;
  }
  check(cudaMemcpyAsync(b_->params.get(), b_->params_host.get(), rows.size() * sizeof(RowSamplingParams),
                        cudaMemcpyHostToDevice, stream),
        "sampling parameters upload");
  if (offset > 0) {
    const size_t bytes = static_cast<size_t>(offset) * sizeof(int32_t);
    check(cudaMemcpyAsync(b_->penalty_tokens.get(), b_->penalty_tokens_host.get(), bytes, cudaMemcpyHostToDevice, stream),
          "penalty upload");
    check(cudaMemcpyAsync(b_->penalty_counts.get(), b_->penalty_counts_host.get(), bytes, cudaMemcpyHostToDevice, stream),
          "penalty upload");
  }
}

void DeviceSampler::enqueue(const float* logits, int64_t first, int64_t count, bool logprobs, cudaStream_t stream) {
  if (count > pass_rows_ || first + count > max_rows_) fail("device sampler: rows [{}, {}) exceed its room", first, first + count);
  const PenaltyWindows penalties{b_->penalty_tokens.get(), b_->penalty_counts.get(), max_rows_ * kMaxPenaltyWindow};
  const SampledRows out{b_->tokens.get(), logprobs ? b_->logprobs.get() : nullptr, logprobs ? b_->top_ids.get() : nullptr,
                        logprobs ? b_->top_logprobs.get() : nullptr};
  check(sample_rows(logits, count, vocab_, b_->params.get() + first, penalties, out, b_->scratch.get(), stream),
        "sample_rows");
  const auto copy = [&](auto* host, const auto* device, size_t per_row) {
    check(cudaMemcpyAsync(host + first * static_cast<int64_t>(per_row), device,
                          static_cast<size_t>(count) * per_row * sizeof(*device), cudaMemcpyDeviceToHost, stream),
          "sampled tokens copy");
  };
  copy(b_->tokens_host.get(), b_->tokens.get(), 1);
  if (!logprobs) return;
  copy(b_->logprobs_host.get(), b_->logprobs.get(), 1);
  copy(b_->top_ids_host.get(), b_->top_ids.get(), kMaxTopLogprobs);
  copy(b_->top_logprobs_host.get(), b_->top_logprobs.get(), kMaxTopLogprobs);
}

void DeviceSampler::collect(int64_t first, int64_t count, bool logprobs, std::span<SampledToken> out) const {
  const RowSamplingParams* params = b_->params_host.get();
  for (int64_t r = first; r < first + count; ++r) {
    SampledToken& o = out[static_cast<size_t>(r)];
    o.token = b_->tokens_host.get()[r];
    o.error.clear();
    o.top.clear();
    o.logprob = 0;
    if (o.token == kArgmaxNaN) o.error = fmt::format("the logits of output row {} hold a NaN", r);
    if (o.token == kArgmaxAllNegativeInfinity) o.error = fmt::format("every logit of output row {} is -inf", r);
    if (o.token == kSampleRejectedRow) o.error = fmt::format("the device sampler rejected output row {}'s parameters", r);
    if (!o.error.empty()) {
      o.token = -1;
      continue;
    }
    if (!logprobs || params[r].top_logprobs < 0) continue;
    o.logprob = b_->logprobs_host.get()[r];
    for (int i = 0; i < params[r].top_logprobs; ++i) {
      const int32_t id = b_->top_ids_host.get()[r * kMaxTopLogprobs + i];
      if (id < 0) break;
      o.top.push_back({id, b_->top_logprobs_host.get()[r * kMaxTopLogprobs + i]});
    }
  }
}

}  // namespace realizar::cuda
