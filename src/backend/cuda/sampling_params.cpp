// Host side of sample_rows (sampling_kernels.h): which rows the device serves, and their
// parameters and penalty windows in the device's form.
#include <algorithm>
#include <cmath>

#include "backend/cuda/sampling_kernels.h"
#include "realizar/error.h"

namespace realizar::cuda {

bool device_samples(const SamplingParams& params, int64_t vocab) {
  return params.temperature <= 0 ||
         (params.top_k >= 1 && params.top_k <= kMaxDeviceTopK && params.top_k < vocab);
}

RowSamplingParams row_sampling_params(const SamplingParams& params, int64_t position, int32_t top_logprobs,
                                      int32_t penalty_offset, int32_t penalty_count) {
  check_sampling_params(params);
  if (top_logprobs < -1 || top_logprobs > kMaxTopLogprobs)
    fail("top_logprobs must be in [-1, {}], got {}", kMaxTopLogprobs, top_logprobs);
  const auto seed = params.seed;
  const auto at = static_cast<uint64_t>(position);
  RowSamplingParams row{};
  row.temperature = params.temperature;
  row.top_k = params.top_k;
  row.top_p = params.top_p;
  // As Sampler::filter computes the min-p floor's offset (float std::log), so the floors agree.
  row.log_min_p = params.min_p > 0 ? std::log(params.min_p) : -INFINITY;
  row.repeat_penalty = params.repeat_penalty;
  row.presence_penalty = params.presence_penalty;
  row.frequency_penalty = params.frequency_penalty;
  row.seed_low = static_cast<uint32_t>(seed);
  row.seed_high = static_cast<uint32_t>(seed >> 32);
  row.position_low = static_cast<uint32_t>(at);
  row.position_high = static_cast<uint32_t>(at >> 32);
  row.penalty_offset = penalty_offset;
  row.penalty_count = penalty_count;
  row.top_logprobs = top_logprobs;
  return row;
}

int32_t penalty_window(const SamplingParams& params, std::span<const int32_t> history, int64_t vocab,
                       int32_t* tokens, int32_t* counts) {
  if (!params.has_penalties()) return 0;
  const size_t window = std::min(history.size(), static_cast<size_t>(params.penalty_last_n));
  std::copy(history.end() - static_cast<std::ptrdiff_t>(window), history.end(), tokens);
  std::sort(tokens, tokens + window);
  // Equal tokens are now runs: one entry per run, count = its length (written over the runs).
  int32_t distinct = 0;
  for (size_t run = 0; run < window;) {
    const int32_t token = tokens[run];
    if (token < 0 || token >= vocab) fail("penalty window: token {} outside vocabulary of {}", token, vocab);
    size_t end = run;
    while (end < window && tokens[end] == token) ++end;
    tokens[distinct] = token;
    counts[distinct] = static_cast<int32_t>(end - run);
    ++distinct;
    run = end;
  }
  return distinct;
}

}  // namespace realizar::cuda
