// sample_rows (src/backend/cuda/sampling_kernels.h) against the host Sampler, the definition of
// sampling (src/sampling/sampler.cpp), on fresh random logits at the real vocabulary size
// (151,936) and odd ones, 1 to 64 rows per call: the tokens, the survivor sets of the filters, the
// distribution of draws, penalties, seeded determinism whatever shares the call, raw
// log-probabilities, error codes; and the host-side packing helpers (which run without a GPU).
// A benchmark of sample_rows next to argmax_rows runs with REALIZAR_CUDA_BENCH=1.
//
// Tolerance: the device computes the host's weights with float(exp(double)) where the host calls
// glibc's expf; the two differ by 1 ulp for ~0.06 % of arguments, so a drawn token may differ
// only where u * total lies within float rounding of a cumulative-weight boundary. Every mismatch
// is checked to be such a case (within 1e-6 of the total) and mismatches must stay under 0.1 %.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "realizar/error.h"
#include "realizar/sampling.h"
#include "sampling/philox.h"

#ifdef REALIZAR_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "backend/cuda/kernels.h"
#include "backend/cuda/sampling_kernels.h"
#include "gpu/cuda_test_support.h"
#endif

namespace realizar {
namespace {

#ifndef REALIZAR_HAVE_CUDA
TEST(CudaSampling, SkippedWithoutCuda) { GTEST_SKIP() << "built without the CUDA backend"; }
#else

using testing::DeviceVector;
using testing::random_floats;

constexpr int64_t kModelVocab = 151936;  // Qwen2's

// Logits shaped like a language model's: a flat tail (uniform in [-4, 4]) and a head of `head`
// tokens lifted by up to 12, so that top-p and min-p cut inside the top k.
std::vector<float> model_like_logits(int64_t vocab, std::mt19937_64& rng, int head = 32) {
  std::vector<float> logits = random_floats(static_cast<size_t>(vocab), rng, 4.0f);
  std::uniform_int_distribution<int64_t> token(0, vocab - 1);
  std::uniform_real_distribution<float> lift(0.0f, 12.0f);
  for (int i = 0; i < head; ++i) logits[static_cast<size_t>(token(rng))] += lift(rng);
  return logits;
}

// `rows` rows of logits, alternately model-like and uniform in [-scale, scale] (scale 1 to 8).
std::vector<float> mixed_logits(int64_t rows, int64_t vocab, std::mt19937_64& rng) {
  std::vector<float> all;
  all.reserve(static_cast<size_t>(rows * vocab));
  for (int64_t r = 0; r < rows; ++r) {
    const std::vector<float> row = r % 2 == 0 ? model_like_logits(vocab, rng)
                                              : random_floats(static_cast<size_t>(vocab), rng, 1.0f + r % 8);
    all.insert(all.end(), row.begin(), row.end());
  }
  return all;
}

SamplingParams params_with(float temperature, int top_k, float top_p, float min_p, uint64_t seed = 0x5EED) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = top_k;
  p.top_p = top_p;
  p.min_p = min_p;
  p.seed = seed;
  return p;
}

// One row of a sample_rows call, in the host Sampler's terms.
struct RowSpec {
  SamplingParams params;
  std::vector<int32_t> history;
  int64_t position = 0;
  int32_t top_logprobs = -1;
};

struct Sampled {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  std::vector<int32_t> top_ids;  // [rows x kMaxTopLogprobs]
  std::vector<float> top_logprobs;
};

void ok(cudaError_t status) { ASSERT_EQ(status, cudaSuccess) << cudaGetErrorString(status); }

// Device buffers for sample_rows on `rows` rows of `vocab` logits.
class DeviceSampling {
 public:
  DeviceSampling(int64_t rows, int64_t vocab)
      : rows_(rows),
        vocab_(vocab),
        logits_(static_cast<size_t>(rows * vocab)),
        params_(static_cast<size_t>(rows)),
        tokens_(static_cast<size_t>(rows)),
        logprobs_(static_cast<size_t>(rows)),
        top_ids_(static_cast<size_t>(rows * cuda::kMaxTopLogprobs)),
        top_logprobs_(static_cast<size_t>(rows * cuda::kMaxTopLogprobs)),
        scratch_(cuda::sample_rows_scratch_bytes(rows, vocab)) {}

  void upload(const std::vector<float>& logits) {
    ASSERT_EQ(logits.size(), static_cast<size_t>(rows_ * vocab_));
    ok(cudaMemcpy(logits_.get(), logits.data(), logits.size() * sizeof(float), cudaMemcpyHostToDevice));
  }

  // The rows' parameters and penalty windows packed as a backend would (row_sampling_params,
  // penalty_window), then run.
  Sampled run(const std::vector<RowSpec>& specs, bool with_logprobs = true) {
    std::vector<cuda::RowSamplingParams> params;
    std::vector<int32_t> tokens, counts;
    for (const RowSpec& spec : specs) {
      const size_t room = std::min(spec.history.size(), static_cast<size_t>(spec.params.penalty_last_n));
      const auto offset = static_cast<int32_t>(tokens.size());
      tokens.resize(tokens.size() + room);
      counts.resize(tokens.size());
      const int32_t n = cuda::penalty_window(spec.params, spec.history, vocab_, tokens.data() + offset,
                                             counts.data() + offset);
      tokens.resize(static_cast<size_t>(offset + n));
      counts.resize(tokens.size());
      params.push_back(cuda::row_sampling_params(spec.params, spec.position, spec.top_logprobs, offset, n));
    }
    return run_packed(params, tokens, counts, with_logprobs);
  }

  // Runs on the first params.size() rows with parameters and penalty arrays as given.
  Sampled run_packed(const std::vector<cuda::RowSamplingParams>& params,
                     const std::vector<int32_t>& penalty_tokens, const std::vector<int32_t>& penalty_counts,
                     bool with_logprobs = true) {
    const auto rows = static_cast<int64_t>(params.size());
    EXPECT_LE(rows, rows_);
    EXPECT_EQ(penalty_tokens.size(), penalty_counts.size());
    ok_or_fail(
        cudaMemcpy(params_.get(), params.data(), params.size() * sizeof(params[0]), cudaMemcpyHostToDevice));
    // Poison the outputs so that unwritten entries show (0xFF bytes: NaN floats, -1 ints).
    for (void* out : {static_cast<void*>(tokens_.get()), static_cast<void*>(logprobs_.get())}) {
      ok_or_fail(cudaMemset(out, 0xFF, static_cast<size_t>(rows_) * 4));
    }
    for (void* out : {static_cast<void*>(top_ids_.get()), static_cast<void*>(top_logprobs_.get())}) {
      ok_or_fail(cudaMemset(out, 0xFF, static_cast<size_t>(rows_ * cuda::kMaxTopLogprobs) * 4));
    }
    const DeviceVector<int32_t> tokens(penalty_tokens.empty() ? std::vector<int32_t>{0} : penalty_tokens);
    const DeviceVector<int32_t> counts(penalty_counts.empty() ? std::vector<int32_t>{0} : penalty_counts);
    const cuda::PenaltyWindows windows{tokens.get(), counts.get(),
                                       static_cast<int64_t>(penalty_tokens.size())};
    cuda::SampledRows out{tokens_.get(), nullptr, nullptr, nullptr};
    if (with_logprobs)
      out = cuda::SampledRows{tokens_.get(), logprobs_.get(), top_ids_.get(), top_logprobs_.get()};
    ok_or_fail(
        cuda::sample_rows(logits_.get(), rows, vocab_, params_.get(), windows, out, scratch_.get(), nullptr));
    Sampled result{tokens_.read(), logprobs_.read(), top_ids_.read(), top_logprobs_.read()};
    result.tokens.resize(static_cast<size_t>(rows));
    result.logprobs.resize(static_cast<size_t>(rows));
    result.top_ids.resize(static_cast<size_t>(rows * cuda::kMaxTopLogprobs));
    result.top_logprobs.resize(static_cast<size_t>(rows * cuda::kMaxTopLogprobs));
    return result;
  }

  const float* logits() const { return logits_.get(); }
  int32_t* tokens() const { return tokens_.get(); }

 private:
  static void ok_or_fail(cudaError_t status) { EXPECT_EQ(status, cudaSuccess) << cudaGetErrorString(status); }

  int64_t rows_, vocab_;
  DeviceVector<float> logits_;
  DeviceVector<cuda::RowSamplingParams> params_;
  DeviceVector<int32_t> tokens_;
  DeviceVector<float> logprobs_;
  DeviceVector<int32_t> top_ids_;
  DeviceVector<float> top_logprobs_;
  DeviceVector<uint8_t> scratch_;
};

std::span<const float> row_of(const std::vector<float>& logits, int64_t vocab, int64_t r) {
  return std::span<const float>(logits).subspan(static_cast<size_t>(r * vocab), static_cast<size_t>(vocab));
}

// The host's draw, recomputed from its survivors: their cumulative weights (rank order, double
// sums of float exp((l - max) / T)) and the threshold u * total.
struct HostDraw {
  std::vector<int32_t> survivors;
  std::vector<double> cumulative;
  double threshold = 0;
};

HostDraw host_draw(std::span<const float> logits, const RowSpec& spec) {
  Sampler sampler(static_cast<int>(logits.size()));
  std::vector<float> penalized(logits.size());
  sampler.apply_penalties(logits, spec.params, spec.history, penalized);
  HostDraw draw;
  const std::span<const int32_t> survivors = sampler.survivors(logits, spec.params, spec.history);
  draw.survivors.assign(survivors.begin(), survivors.end());
  const float max_logit = penalized[static_cast<size_t>(draw.survivors[0])];
  const float inverse_temperature = 1.0f / spec.params.temperature;
  double total = 0;
  for (const int32_t id : draw.survivors) {
    total += std::exp((penalized[static_cast<size_t>(id)] - max_logit) * inverse_temperature);
    draw.cumulative.push_back(total);
  }
  draw.threshold = sampling_uniform(spec.params.seed, spec.position, 0) * total;
  return draw;
}

// Whether `device` may differ from the host's `host` token through rounding: both survive, and
// every cumulative-weight boundary between them lies within 1e-6 of the total from u * total.
::testing::AssertionResult within_rounding_of_a_boundary(std::span<const float> logits, const RowSpec& spec,
                                                         int32_t host, int32_t device) {
  const HostDraw draw = host_draw(logits, spec);
  const auto at = [&](int32_t token) {
    return std::find(draw.survivors.begin(), draw.survivors.end(), token) - draw.survivors.begin();
  };
  const auto h = at(host), d = at(device), end = static_cast<std::ptrdiff_t>(draw.survivors.size());
  if (h == end) return ::testing::AssertionFailure() << "host token " << host << " is not a survivor";
  if (d == end) return ::testing::AssertionFailure() << "device token " << device << " is not a survivor";
  const double total = draw.cumulative.back();
  for (auto b = std::min(h, d); b < std::max(h, d); ++b) {
    const double gap = std::abs(draw.cumulative[static_cast<size_t>(b)] - draw.threshold);
    if (gap > 1e-6 * total)
      return ::testing::AssertionFailure()
             << "host " << host << " (rank " << h << "), device " << device << " (rank " << d
             << "): boundary " << b << " is " << gap / total << " of the total away from u * total";
  }
  return ::testing::AssertionSuccess();
}

// Checks each row's device token against Sampler::sample; returns the number of mismatches (each
// checked to be within rounding of a draw boundary).
int expect_host_tokens(const std::vector<float>& logits, int64_t vocab, const std::vector<RowSpec>& specs,
                       const std::vector<int32_t>& device, const std::string& where) {
  Sampler sampler(static_cast<int>(vocab));
  int mismatches = 0;
  for (size_t r = 0; r < specs.size(); ++r) {
    const std::span<const float> row = row_of(logits, vocab, static_cast<int64_t>(r));
    const int32_t host = sampler.sample(row, specs[r].params, specs[r].history, specs[r].position);
    if (device[r] == host) continue;
    ++mismatches;
    EXPECT_GT(specs[r].params.temperature, 0.0f)
        << where << " row " << r << ": greedy rows must match exactly";
    if (specs[r].params.temperature > 0) {
      EXPECT_TRUE(within_rounding_of_a_boundary(row, specs[r], host, device[r])) << where << " row " << r;
    }
  }
  return mismatches;
}

// The host's survivors of a row as a set.
std::set<int32_t> host_survivors(const std::vector<float>& row, const RowSpec& spec) {
  Sampler sampler(static_cast<int>(row.size()));
  const std::span<const int32_t> ids = sampler.survivors(row, spec.params, spec.history);
  return std::set<int32_t>(ids.begin(), ids.end());
}

// `rows` copies of `row` (one logits vector per call row).
std::vector<float> replicated(const std::vector<float>& row, int64_t rows) {
  std::vector<float> all;
  for (int64_t r = 0; r < rows; ++r) all.insert(all.end(), row.begin(), row.end());
  return all;
}

// The tokens drawn for `spec` at positions 0, 1, ... (`rounds` calls of `rows` rows).
std::vector<int32_t> draws_over_positions(DeviceSampling& device, RowSpec spec, int64_t rows, int rounds) {
  std::vector<int32_t> drawn;
  std::vector<RowSpec> specs(static_cast<size_t>(rows), spec);
  for (int round = 0; round < rounds; ++round) {
    for (int64_t r = 0; r < rows; ++r) specs[static_cast<size_t>(r)].position = round * rows + r;
    const Sampled s = device.run(specs, false);
    drawn.insert(drawn.end(), s.tokens.begin(), s.tokens.end());
  }
  return drawn;
}

// ---- host-side packing (no GPU needed) -------------------------------------------------------

TEST(CudaSamplingPacking, DeviceServesGreedyRowsAndTopKUpToTheCap) {
  EXPECT_TRUE(cuda::device_samples(params_with(0.0f, 0, 1.0f, 0.0f), 1000));  // greedy: top-k ignored
  EXPECT_TRUE(cuda::device_samples(params_with(0.8f, 40, 0.95f, 0.05f), 151936));
  EXPECT_TRUE(cuda::device_samples(params_with(0.8f, cuda::kMaxDeviceTopK, 1.0f, 0.0f), 151936));
  EXPECT_FALSE(cuda::device_samples(params_with(0.8f, cuda::kMaxDeviceTopK + 1, 1.0f, 0.0f), 151936));
  EXPECT_FALSE(cuda::device_samples(params_with(0.8f, 0, 0.95f, 0.0f), 151936));  // top-k off
  EXPECT_FALSE(cuda::device_samples(params_with(0.8f, 100, 0.95f, 0.0f), 100));   // top_k >= vocab: off
  EXPECT_TRUE(cuda::device_samples(params_with(0.8f, 99, 0.95f, 0.0f), 100));
}

TEST(CudaSamplingPacking, RowParamsCarryTheSeedPositionAndTheHostsMinPLog) {
  SamplingParams p = params_with(0.7f, 40, 0.9f, 0.05f, 0x0123456789ABCDEFull);
  p.repeat_penalty = 1.2f;
  p.presence_penalty = 0.5f;
  p.frequency_penalty = -0.25f;
  const cuda::RowSamplingParams row = cuda::row_sampling_params(p, (int64_t{5} << 32) + 7, 3, 11, 4);
  EXPECT_EQ(row.temperature, 0.7f);
  EXPECT_EQ(row.top_k, 40);
  EXPECT_EQ(row.top_p, 0.9f);
  EXPECT_EQ(row.log_min_p, std::log(0.05f));
  EXPECT_EQ(row.repeat_penalty, 1.2f);
  EXPECT_EQ(row.presence_penalty, 0.5f);
  EXPECT_EQ(row.frequency_penalty, -0.25f);
  EXPECT_EQ(row.seed_low, 0x89ABCDEFu);
  EXPECT_EQ(row.seed_high, 0x01234567u);
  EXPECT_EQ(row.position_low, 7u);
  EXPECT_EQ(row.position_high, 5u);
  EXPECT_EQ(row.penalty_offset, 11);
  EXPECT_EQ(row.penalty_count, 4);
  EXPECT_EQ(row.top_logprobs, 3);
  EXPECT_EQ(cuda::row_sampling_params(params_with(0.7f, 40, 0.9f, 0.0f), 0, -1, 0, 0).log_min_p, -INFINITY);
}

TEST(CudaSamplingPacking, RowParamsRejectWhatTheSamplerRejects) {
  using ::testing::HasSubstr;
  using ::testing::ThrowsMessage;
  EXPECT_THAT([] { cuda::row_sampling_params(params_with(-1.0f, 40, 0.9f, 0.0f), 0, -1, 0, 0); },
              ThrowsMessage<Error>(HasSubstr("temperature must be a finite number of at least 0, got -1")));
  EXPECT_THAT([] { cuda::row_sampling_params(params_with(0.8f, 40, 1.5f, 0.0f), 0, -1, 0, 0); },
              ThrowsMessage<Error>(HasSubstr("top_p must be in [0, 1], got 1.5")));
  EXPECT_THAT([] { cuda::row_sampling_params(params_with(0.8f, 40, 0.9f, 0.0f), 0, 21, 0, 0); },
              ThrowsMessage<Error>(HasSubstr("top_logprobs must be in [-1, 20], got 21")));
  EXPECT_THAT([] { cuda::row_sampling_params(params_with(0.8f, 40, 0.9f, 0.0f), 0, -2, 0, 0); },
              ThrowsMessage<Error>(HasSubstr("top_logprobs must be in [-1, 20], got -2")));
}

TEST(CudaSamplingPacking, PenaltyWindowCountsTheDistinctTokensOfTheLastN) {
  SamplingParams p = params_with(0.8f, 40, 0.9f, 0.0f);
  p.repeat_penalty = 1.1f;
  p.penalty_last_n = 6;
  const std::vector<int32_t> history = {9, 9, 9, 4, 7, 4, 2, 7, 7};  // the window: 4 7 4 2 7 7
  std::vector<int32_t> tokens(6, -1), counts(6, -1);
  ASSERT_EQ(cuda::penalty_window(p, history, 10, tokens.data(), counts.data()), 3);
  EXPECT_EQ(std::vector<int32_t>(tokens.begin(), tokens.begin() + 3), (std::vector<int32_t>{2, 4, 7}));
  EXPECT_EQ(std::vector<int32_t>(counts.begin(), counts.begin() + 3), (std::vector<int32_t>{1, 2, 3}));
  // A history shorter than the window: all of it. No penalty active: nothing.
  EXPECT_EQ(cuda::penalty_window(p, std::vector<int32_t>{3, 3}, 10, tokens.data(), counts.data()), 1);
  EXPECT_EQ(counts[0], 2);
  p.repeat_penalty = 1.0f;
  EXPECT_EQ(cuda::penalty_window(p, history, 10, tokens.data(), counts.data()), 0);
  p.presence_penalty = 0.5f;
  p.penalty_last_n = 0;
  EXPECT_EQ(cuda::penalty_window(p, history, 10, tokens.data(), counts.data()), 0);
}

TEST(CudaSamplingPacking, PenaltyWindowRejectsTokensOutsideTheVocabulary) {
  SamplingParams p = params_with(0.8f, 40, 0.9f, 0.0f);
  p.frequency_penalty = 0.5f;
  std::vector<int32_t> tokens(3), counts(3);
  EXPECT_THAT(
      [&] {
        cuda::penalty_window(p, std::vector<int32_t>{1, 10, 2}, 10, tokens.data(), counts.data());
      },
      ::testing::ThrowsMessage<Error>(::testing::HasSubstr("token 10 outside vocabulary of 10")));
  EXPECT_THAT([&] { cuda::penalty_window(p, std::vector<int32_t>{-1}, 10, tokens.data(), counts.data()); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("token -1 outside vocabulary of 10")));
}

// ---- the kernels against the host Sampler ------------------------------------------------------

// Per row: one of a spread of parameter sets (greedy, top-k 1 to the cap, top-p and min-p on and
// off, temperatures 0.3 to 1.5), its own seed; positions change every round.
std::vector<RowSpec> varied_specs(int64_t rows, int64_t vocab, std::mt19937_64& rng) {
  const int top_ks[] = {1, 5, 40, 40, 100, cuda::kMaxDeviceTopK};
  const float top_ps[] = {1.0f, 0.95f, 0.5f, 0.9f};
  const float min_ps[] = {0.0f, 0.05f, 0.2f};
  const float temperatures[] = {0.8f, 0.3f, 1.5f, 1.0f, 0.0f};
  std::vector<RowSpec> specs(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    RowSpec& spec = specs[static_cast<size_t>(r)];
    const int top_k = static_cast<int>(std::min<int64_t>(top_ks[r % 6], vocab - 1));
    spec.params =
        params_with(temperatures[(r / 2) % 5], top_k, top_ps[(r / 3) % 4], min_ps[(r / 5) % 3], rng());
  }
  return specs;
}

TEST(CudaSampling, TokensMatchTheHostSampler) {
  SKIP_WITHOUT_GPU();
  std::mt19937_64 rng(101);
  int samples = 0, mismatches = 0;
  for (const int64_t vocab : {kModelVocab, int64_t{1000}, int64_t{50257}}) {
    for (const int64_t rows : {1, 7, 32, 64}) {
      const std::vector<float> logits = mixed_logits(rows, vocab, rng);
      DeviceSampling device(rows, vocab);
      device.upload(logits);
      std::vector<RowSpec> specs = varied_specs(rows, vocab, rng);
      const int rounds = rows == 1 ? 64 : 8;
      for (int round = 0; round < rounds; ++round) {
        for (RowSpec& spec : specs) spec.position = static_cast<int64_t>(rng() % 100000);
        const Sampled s = device.run(specs, false);
        const std::string where = "vocab " + std::to_string(vocab) + ", " + std::to_string(rows) +
                                  " rows, round " + std::to_string(round);
        mismatches += expect_host_tokens(logits, vocab, specs, s.tokens, where);
        samples += static_cast<int>(rows);
      }
    }
  }
  EXPECT_LT(mismatches, samples / 1000 + 1)
      << mismatches << " of " << samples << " tokens differ from the host's";
}

// A survivor set drawn at a high temperature (all survivors nearly equally likely) over many
// positions: the set of tokens drawn must be the host's survivors, exactly.
void expect_survivors_drawn(const std::vector<float>& row, const RowSpec& spec, const std::string& what) {
  const auto vocab = static_cast<int64_t>(row.size());
  const std::set<int32_t> expected = host_survivors(row, spec);
  ASSERT_GE(expected.size(), 2u) << what << ": a test that cannot tell survivors apart";
  constexpr int64_t kRows = 64;
  DeviceSampling device(kRows, vocab);
  device.upload(replicated(row, kRows));
  const int rounds = expected.size() > 64 ? 128 : 32;  // >= 16 draws per survivor on average
  const std::vector<int32_t> drawn = draws_over_positions(device, spec, kRows, rounds);
  EXPECT_EQ(std::set<int32_t>(drawn.begin(), drawn.end()), expected) << what << ", vocab " << vocab;
}

TEST(CudaSampling, SurvivorSetsAreTheHosts) {
  SKIP_WITHOUT_GPU();
  std::mt19937_64 rng(202);
  for (const int64_t vocab : {kModelVocab, int64_t{50257}, int64_t{1000}}) {
    const std::vector<float> row = model_like_logits(vocab, rng, 64);
    RowSpec spec;
    spec.params = params_with(100.0f, 40, 1.0f, 0.0f);
    expect_survivors_drawn(row, spec, "top-k 40");
    spec.params = params_with(100.0f, cuda::kMaxDeviceTopK, 1.0f, 0.0f);
    expect_survivors_drawn(row, spec, "top-k at the cap");
    spec.params = params_with(100.0f, cuda::kMaxDeviceTopK, 0.9f, 0.0f);
    expect_survivors_drawn(row, spec, "top-p 0.9 over top-k 256");
    spec.params = params_with(100.0f, cuda::kMaxDeviceTopK, 1.0f, 0.001f);
    expect_survivors_drawn(row, spec, "min-p 0.001");
    spec.params = params_with(100.0f, 40, 0.95f, 0.05f);
    expect_survivors_drawn(row, spec, "the default chain");
  }
  // A small vocabulary in one chunk, top-k one below it.
  const std::vector<float> small = random_floats(200, rng, 3.0f);
  RowSpec spec;
  spec.params = params_with(100.0f, 199, 1.0f, 0.0f);
  expect_survivors_drawn(small, spec, "top-k vocab - 1");
}

// Equal logits straddling the top-k boundary: the host keeps the lower ids among them.
TEST(CudaSampling, TiesAtTheTopKBoundaryKeepTheLowerIds) {
  SKIP_WITHOUT_GPU();
  std::mt19937_64 rng(303);
  for (const int64_t vocab : {kModelVocab, int64_t{1000}}) {
    for (const int top_k : {1, 40, cuda::kMaxDeviceTopK}) {
      std::vector<float> row = random_floats(static_cast<size_t>(vocab), rng, 4.0f);
      std::vector<int32_t> order(static_cast<size_t>(vocab));
      std::iota(order.begin(), order.end(), 0);
      std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return row[a] > row[b]; });
      // Ranks [top_k - 3, top_k + 7) get one value: ids spread over chunks, scrambled order.
      const float tie = row[static_cast<size_t>(order[static_cast<size_t>(std::max(0, top_k - 3))])];
      for (int rank = std::max(0, top_k - 3); rank < top_k + 7; ++rank)
        row[static_cast<size_t>(order[rank])] = tie;
      RowSpec spec;
      spec.params = params_with(100.0f, top_k, 1.0f, 0.0f);
      if (top_k == 1) {  // one survivor: greedy-like; the lowest id of the tied maximum
        std::vector<float> all = replicated(row, 4);
        DeviceSampling device(4, vocab);
        device.upload(all);
        const std::vector<int32_t> drawn = draws_over_positions(device, spec, 4, 2);
        EXPECT_EQ(std::set<int32_t>(drawn.begin(), drawn.end()), host_survivors(row, spec))
            << "vocab " << vocab;
        continue;
      }
      expect_survivors_drawn(row, spec, "ties at top-k " + std::to_string(top_k));
    }
  }
}

// Pearson's chi-square statistic of observed counts against expected probabilities.
double chi_square(const std::vector<int>& counts, const std::vector<double>& probabilities, int draws) {
  double statistic = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    const double expected = probabilities[i] * draws;
    statistic += (counts[i] - expected) * (counts[i] - expected) / expected;
  }
  return statistic;
}

TEST(CudaSampling, DrawsFollowSoftmaxOverTheSurvivors) {
  SKIP_WITHOUT_GPU();
  std::mt19937_64 rng(404);
  constexpr int64_t kVocab = 50257, kRows = 64;
  // Eight leading tokens at spread-out logits above a tail that top-k 8 drops.
  std::vector<float> row = random_floats(kVocab, rng, 2.0f);
  const std::vector<float> head = {9.0f, 8.6f, 8.1f, 7.9f, 7.0f, 6.4f, 6.2f, 5.0f};
  std::vector<int32_t> head_ids;
  for (size_t i = 0; i < head.size(); ++i) {
    head_ids.push_back(static_cast<int32_t>((i * 7919 + 13) % kVocab));
    row[static_cast<size_t>(head_ids.back())] = head[i];
  }
  DeviceSampling device(kRows, kVocab);
  device.upload(replicated(row, kRows));
  constexpr int kRounds = 500;
  for (const float temperature : {1.0f, 0.5f, 2.0f}) {
    RowSpec spec;
    spec.params = params_with(temperature, 8, 1.0f, 0.0f, 77);
    const std::vector<int32_t> drawn = draws_over_positions(device, spec, kRows, kRounds);
    std::vector<int> counts(head.size());
    for (const int32_t token : drawn) {
      const auto at = std::find(head_ids.begin(), head_ids.end(), token) - head_ids.begin();
      ASSERT_LT(at, static_cast<std::ptrdiff_t>(head.size()))
          << "token " << token << " is not among the top 8";
      counts[static_cast<size_t>(at)]++;
    }
    // Independent reference: softmax(l / T) over the eight, in double.
    std::vector<double> p(head.size());
    for (size_t i = 0; i < head.size(); ++i)
      p[i] = std::exp((head[i] - head[0]) / static_cast<double>(temperature));
    const double total = std::accumulate(p.begin(), p.end(), 0.0);
    for (double& x : p) x /= total;
    // 7 degrees of freedom: P(chi2 > 29.9) = 1e-4 for a correct sampler.
    EXPECT_LT(chi_square(counts, p, static_cast<int>(drawn.size())), 29.9) << "temperature " << temperature;
  }
  // The filters on top: top-p 0.75 keeps three of the eight (probabilities 0.371, 0.248, 0.151
  // reach 0.77 at the third; min-p 0.1 would keep five: logits >= 9 + log 0.1), min-p 0.35 keeps
  // three (logits >= 7.95; top-p 0.8 would keep four). Draws follow softmax over the three.
  for (const auto& [top_p, min_p] : {std::pair{0.75f, 0.1f}, std::pair{0.8f, 0.35f}}) {
    RowSpec spec;
    spec.params = params_with(1.0f, 8, top_p, min_p, 78);
    ASSERT_EQ(host_survivors(row, spec), (std::set<int32_t>{head_ids[0], head_ids[1], head_ids[2]}));
    const std::vector<int32_t> drawn = draws_over_positions(device, spec, kRows, kRounds);
    std::vector<int> counts(3);
    for (const int32_t token : drawn) {
      const auto at = std::find(head_ids.begin(), head_ids.begin() + 3, token) - head_ids.begin();
      ASSERT_LT(at, 3) << "token " << token << " did not survive top-p " << top_p << " / min-p " << min_p;
      counts[static_cast<size_t>(at)]++;
    }
    std::vector<double> p = {1.0, std::exp(8.6 - 9.0), std::exp(8.1 - 9.0)};
    const double total = p[0] + p[1] + p[2];
    for (double& x : p) x /= total;
    // 2 degrees of freedom: P(chi2 > 18.4) = 1e-4.
    EXPECT_LT(chi_square(counts, p, static_cast<int>(drawn.size())), 18.4)
        << "top-p " << top_p << " min-p " << min_p;
  }
}

// Penalty windows whose tokens include the leading ones (positive and negative logits): the
// device must pick the host's token, greedy rows exactly.
TEST(CudaSampling, PenaltiesGiveTheHostsTokens) {
  SKIP_WITHOUT_GPU();
  std::mt19937_64 rng(505);
  for (const int64_t vocab : {kModelVocab, int64_t{1000}}) {
    constexpr int64_t kRows = 32;
    std::vector<float> logits = mixed_logits(kRows, vocab, rng);
    for (int64_t r = 0; r < kRows; r += 4) {  // every fourth row all negative: the repeat penalty multiplies
      for (int64_t i = 0; i < vocab; ++i) logits[static_cast<size_t>(r * vocab + i)] -= 30.0f;
    }
    std::vector<RowSpec> specs(kRows);
    int changed_greedy = 0;
    for (int64_t r = 0; r < kRows; ++r) {
      const std::span<const float> row = row_of(logits, vocab, r);
      std::vector<int32_t> order(static_cast<size_t>(vocab));
      std::iota(order.begin(), order.end(), 0);
      std::partial_sort(order.begin(), order.begin() + 8, order.end(),
                        [&](int32_t a, int32_t b) { return row[a] > row[b]; });
      RowSpec& spec = specs[static_cast<size_t>(r)];
      spec.params = params_with(r % 3 == 0 ? 0.0f : 0.8f, 40, 0.95f, 0.05f, rng());
      spec.params.repeat_penalty = r % 2 == 0 ? 1.3f : 2.5f;
      spec.params.presence_penalty = 0.4f;
      spec.params.frequency_penalty = 0.25f;
      spec.params.penalty_last_n = r % 5 == 0 ? 16 : 64;
      std::uniform_int_distribution<int32_t> any(0, static_cast<int32_t>(vocab - 1));
      for (int i = 0; i < 100; ++i)
        spec.history.push_back(i % 3 == 0 ? order[static_cast<size_t>(i % 5)] : any(rng));
      spec.history.push_back(order[0]);  // the best token is in every window
      spec.position = static_cast<int64_t>(spec.history.size());
      if (spec.params.temperature == 0 &&
          greedy_token(row) != Sampler(static_cast<int>(vocab)).sample(row, spec.params, spec.history, 0)) {
        ++changed_greedy;
      }
    }
    ASSERT_GT(changed_greedy, 0) << "the penalties never change a greedy pick: the test cannot fail";
    DeviceSampling device(kRows, vocab);
    device.upload(logits);
    for (int round = 0; round < 4; ++round) {
      for (RowSpec& spec : specs) spec.position += 1;
      const Sampled s = device.run(specs, false);
      expect_host_tokens(logits, vocab, specs, s.tokens, "vocab " + std::to_string(vocab));
    }
  }
}

// The same row at the same (seed, position) gives the same token and log-probabilities alone,
// as row 5 of 32 beside random rows, and beside rows of other kinds (greedy, penalties, top
// log-probabilities, other top-k).
TEST(CudaSampling, RowResultsDoNotDependOnTheRestOfTheCall) {
  SKIP_WITHOUT_GPU();
  std::mt19937_64 rng(606);
  constexpr int64_t kVocab = kModelVocab, kRows = 32, kAt = 5;
  const std::vector<float> row = model_like_logits(kVocab, rng);
  DeviceSampling alone(1, kVocab);
  alone.upload(row);
  DeviceSampling batch(kRows, kVocab);
  std::vector<float> all = mixed_logits(kRows, kVocab, rng);
  std::copy(row.begin(), row.end(), all.begin() + kAt * kVocab);
  batch.upload(all);
  std::vector<RowSpec> random_rows = varied_specs(kRows, kVocab, rng);
  std::vector<RowSpec> other_kinds(kRows);
  for (int64_t r = 0; r < kRows; ++r) {
    RowSpec& spec = other_kinds[static_cast<size_t>(r)];
    spec.params = params_with(r % 2 == 0 ? 0.0f : 1.2f, 7 + static_cast<int>(r), 0.7f, 0.1f, rng());
    spec.params.repeat_penalty = 1.5f;
    spec.history = {static_cast<int32_t>(r), 3, 3, 9};
    spec.top_logprobs = static_cast<int32_t>(r % 21);
  }
  for (int trial = 0; trial < 16; ++trial) {
    RowSpec spec;
    spec.params = params_with(1.0f, 40, 0.95f, 0.05f, rng());
    spec.position = static_cast<int64_t>(rng() % 4096);
    spec.top_logprobs = 5;
    const Sampled a = alone.run({spec});
    for (std::vector<RowSpec>* others : {&random_rows, &other_kinds}) {
      std::vector<RowSpec> specs = *others;
      specs[kAt] = spec;
      const Sampled b = batch.run(specs);
      EXPECT_EQ(b.tokens[kAt], a.tokens[0]) << "trial " << trial;
      EXPECT_EQ(b.logprobs[kAt], a.logprobs[0]) << "trial " << trial;
      for (int i = 0; i < cuda::kMaxTopLogprobs; ++i) {
        EXPECT_EQ(b.top_ids[kAt * cuda::kMaxTopLogprobs + i], a.top_ids[static_cast<size_t>(i)]);
        const float x = b.top_logprobs[kAt * cuda::kMaxTopLogprobs + i],
                    y = a.top_logprobs[static_cast<size_t>(i)];
        EXPECT_TRUE(x == y || (std::isnan(x) && std::isnan(y))) << x << " vs " << y;
      }
    }
    expect_host_tokens(row, kVocab, {spec}, a.tokens, "alone, trial " + std::to_string(trial));
  }
}

// Log-probabilities of the raw logits (before penalties and temperature) against token_logprob
// and top_logprobs, with a planted tie among the most likely tokens and penalties on the best.
TEST(CudaSampling, LogprobsAreThoseOfTheRawLogits) {
  SKIP_WITHOUT_GPU();
  std::mt19937_64 rng(707);
  for (const int64_t vocab : {kModelVocab, int64_t{1000}, int64_t{50257}, int64_t{7}}) {
    constexpr int64_t kRows = 8;
    std::vector<float> logits = mixed_logits(kRows, vocab, rng);
    const int32_t wants[kRows] = {-1, 0, 1, 5, 20, 20, 3, 12};
    std::vector<RowSpec> specs(kRows);
    for (int64_t r = 0; r < kRows; ++r) {
      const std::span<const float> row = row_of(logits, vocab, r);
      const int32_t best = greedy_token(row);
      if (r == 5) {  // a tie with the best, at a higher id
        const auto other = static_cast<int64_t>((best + vocab / 2) % vocab);
        logits[static_cast<size_t>(r * vocab + other)] = row[static_cast<size_t>(best)];
      }
      RowSpec& spec = specs[static_cast<size_t>(r)];
      spec.params = params_with(r % 4 == 1 ? 0.0f : 0.9f, static_cast<int>(std::min<int64_t>(40, vocab - 1)),
                                0.95f, 0.05f, rng());
      spec.params.repeat_penalty = 3.0f;  // the best raw token, penalized: raw and penalized differ
      spec.history = {best, best};
      spec.position = r;
      spec.top_logprobs = wants[r];
    }
    DeviceSampling device(kRows, vocab);
    device.upload(logits);
    const Sampled s = device.run(specs);
    expect_host_tokens(logits, vocab, specs, s.tokens, "vocab " + std::to_string(vocab));
    for (int64_t r = 0; r < kRows; ++r) {
      const std::span<const float> row = row_of(logits, vocab, r);
      const std::string where = "vocab " + std::to_string(vocab) + " row " + std::to_string(r);
      const int32_t want = wants[r];
      ASSERT_GE(s.tokens[static_cast<size_t>(r)], 0) << where;
      if (want < 0) {
        EXPECT_TRUE(std::isnan(s.logprobs[static_cast<size_t>(r)])) << where;
      } else {
        EXPECT_NEAR(s.logprobs[static_cast<size_t>(r)], token_logprob(row, s.tokens[static_cast<size_t>(r)]),
                    1e-4)
            << where;
      }
      std::vector<TokenLogprob> top;
      top_logprobs(row, std::max(want, 0), top);
      for (int i = 0; i < cuda::kMaxTopLogprobs; ++i) {
        const size_t at = static_cast<size_t>(r * cuda::kMaxTopLogprobs + i);
        if (static_cast<size_t>(i) < top.size()) {
          EXPECT_EQ(s.top_ids[at], top[static_cast<size_t>(i)].token) << where << " rank " << i;
          EXPECT_NEAR(s.top_logprobs[at], top[static_cast<size_t>(i)].logprob, 1e-4)
              << where << " rank " << i;
        } else {
          EXPECT_EQ(s.top_ids[at], -1) << where << " rank " << i;
          EXPECT_TRUE(std::isnan(s.top_logprobs[at])) << where << " rank " << i;
        }
      }
    }
  }
}

// A row with a NaN, a row of -inf, and rows the device does not serve give their codes; the
// other rows' tokens stay the host's.
TEST(CudaSampling, BadRowsGiveTheirCodesAndLeaveOthersAlone) {
  SKIP_WITHOUT_GPU();
  std::mt19937_64 rng(808);
  for (const int64_t vocab : {kModelVocab, int64_t{50257}}) {
    constexpr int64_t kRows = 12;
    std::vector<float> logits = mixed_logits(kRows, vocab, rng);
    logits[static_cast<size_t>(1 * vocab + vocab - 1)] = NAN;  // sampled row with a NaN at the end
    logits[static_cast<size_t>(2 * vocab + vocab / 3)] = NAN;  // greedy row with a NaN
    std::fill(logits.begin() + 3 * vocab, logits.begin() + 4 * vocab, -INFINITY);
    std::vector<RowSpec> specs = varied_specs(kRows, vocab, rng);
    specs[2].params.temperature = 0.0f;
    specs[3].params.temperature = 0.7f;
    std::vector<cuda::RowSamplingParams> params;
    for (const RowSpec& spec : specs) params.push_back(cuda::row_sampling_params(spec.params, 3, 2, 0, 0));
    params[4].top_k = 0;                         // top-k off: the host's
    params[5].top_k = cuda::kMaxDeviceTopK + 1;  // above the cap
    params[6].top_logprobs = cuda::kMaxTopLogprobs + 1;
    params[7].penalty_offset = 1;  // past the penalty arrays (capacity 2)
    params[7].penalty_count = 2;
    params[8].penalty_offset = 0;  // a token outside the vocabulary
    params[8].penalty_count = 2;
    params[9].temperature = NAN;
    for (const size_t r : {4, 5, 7, 8, 9}) params[r].temperature = r == 9 ? NAN : 0.8f;
    const std::vector<int32_t> penalty_tokens = {17, static_cast<int32_t>(vocab)}, penalty_counts = {1, 1};
    DeviceSampling device(kRows, vocab);
    device.upload(logits);
    const Sampled s = device.run_packed(params, penalty_tokens, penalty_counts);
    const std::string where = "vocab " + std::to_string(vocab);
    EXPECT_EQ(s.tokens[1], cuda::kArgmaxNaN) << where;
    EXPECT_EQ(s.tokens[2], cuda::kArgmaxNaN) << where;
    EXPECT_EQ(s.tokens[3], cuda::kArgmaxAllNegativeInfinity) << where;
    for (const size_t r : {4, 5, 6, 7, 8, 9})
      EXPECT_EQ(s.tokens[r], cuda::kSampleRejectedRow) << where << " row " << r;
    for (const size_t r : {1, 2, 3, 4, 5, 6, 7, 8, 9}) {
      EXPECT_TRUE(std::isnan(s.logprobs[r])) << where << " row " << r;
      EXPECT_EQ(s.top_ids[r * cuda::kMaxTopLogprobs], -1) << where << " row " << r;
    }
    Sampler sampler(static_cast<int>(vocab));
    for (const size_t r : {0, 10, 11}) {
      const std::span<const float> row = row_of(logits, vocab, static_cast<int64_t>(r));
      specs[r].position = 3;
      const int32_t host = sampler.sample(row, specs[r].params, {}, 3);
      if (s.tokens[r] != host) {
        EXPECT_TRUE(within_rounding_of_a_boundary(row, specs[r], host, s.tokens[r])) << where;
      }
      EXPECT_NEAR(s.logprobs[r], token_logprob(row, s.tokens[r]), 1e-4) << where << " row " << r;
    }
  }
}

TEST(CudaSampling, LauncherRejectsBadArguments) {
  SKIP_WITHOUT_GPU();
  DeviceSampling device(1, 1000);
  const DeviceVector<cuda::RowSamplingParams> params(1);
  const DeviceVector<uint8_t> scratch(cuda::sample_rows_scratch_bytes(1, 1000));
  const cuda::SampledRows out{device.tokens(), nullptr, nullptr, nullptr};
  EXPECT_EQ(cuda::sample_rows(device.logits(), 0, 1000, params.get(), {}, out, scratch.get(), nullptr),
            cudaSuccess);
  EXPECT_EQ(cuda::sample_rows(device.logits(), 1, 0, params.get(), {}, out, scratch.get(), nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(cuda::sample_rows(device.logits(), 65536, 1000, params.get(), {}, out, scratch.get(), nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(cuda::sample_rows(device.logits(), 1, 1000, params.get(), {}, cuda::SampledRows{}, scratch.get(),
                              nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(cuda::sample_rows(device.logits(), 1, 1000, params.get(), {}, out, nullptr, nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(cuda::sample_rows(device.logits(), 1, 1000, params.get(),
                              cuda::PenaltyWindows{nullptr, nullptr, 4}, out, scratch.get(), nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(cuda::sample_rows_scratch_bytes(0, 1000), 0u);
  EXPECT_EQ(cuda::sample_rows_scratch_bytes(64, kModelVocab),
            64 * cuda::sample_rows_scratch_bytes(1, kModelVocab));
  EXPECT_GT(cuda::sample_rows_scratch_bytes(1, kModelVocab), cuda::sample_rows_scratch_bytes(1, 1000));
}

// ---- benchmark -------------------------------------------------------------------------------

// Median time of one sample_rows call (graph-replayed, 10 calls per graph on the same logits,
// which stay in L2 as after the LM head) at 1-64 rows of the real vocabulary, next to argmax_rows.
TEST(CudaSamplingBench, SampleRowsNextToArgmaxRows) {
  const char* enabled = std::getenv("REALIZAR_CUDA_BENCH");
  if (enabled == nullptr || std::string_view(enabled) != "1") GTEST_SKIP() << "REALIZAR_CUDA_BENCH=1 runs it";
  SKIP_WITHOUT_GPU();
  constexpr int64_t kVocab = kModelVocab;
  constexpr int kCalls = 10;
  std::mt19937_64 rng(909);
  cudaStream_t stream;
  ok(cudaStreamCreate(&stream));
  std::printf("%5s %-34s %10s %12s\n", "rows", "sampling", "us/call", "argmax us");
  for (const int64_t rows : {1, 8, 32, 64}) {
    std::vector<float> logits;
    for (int64_t r = 0; r < rows; ++r) {
      const std::vector<float> row = model_like_logits(kVocab, rng);
      logits.insert(logits.end(), row.begin(), row.end());
    }
    const DeviceVector<float> d_logits(logits);
    const DeviceVector<int32_t> tokens(static_cast<size_t>(rows));
    const DeviceVector<float> logprobs(static_cast<size_t>(rows));
    const DeviceVector<int32_t> top_ids(static_cast<size_t>(rows * cuda::kMaxTopLogprobs));
    const DeviceVector<float> top_logprobs(static_cast<size_t>(rows * cuda::kMaxTopLogprobs));
    const DeviceVector<uint8_t> scratch(cuda::sample_rows_scratch_bytes(rows, kVocab));
    const double argmax = testing::median_launch_seconds(
        kCalls, stream, [&](int) { cuda::argmax_rows(d_logits.get(), rows, kVocab, tokens.get(), stream); });
    struct Variant {
      const char* name;
      SamplingParams params;
      int32_t top_logprobs;
    };
    const Variant variants[] = {
        {"top_k 40 top_p 0.95 min_p 0.05 T 0.8", params_with(0.8f, 40, 0.95f, 0.05f), -1},
        {"  + top_logprobs 20", params_with(0.8f, 40, 0.95f, 0.05f), 20},
        {"top_k 256", params_with(0.8f, cuda::kMaxDeviceTopK, 0.95f, 0.05f), -1},
        {"greedy", params_with(0.0f, 40, 0.95f, 0.05f), -1},
    };
    for (const Variant& v : variants) {
      std::vector<cuda::RowSamplingParams> params;
      for (int64_t r = 0; r < rows; ++r)
        params.push_back(cuda::row_sampling_params(v.params, 100 + r, v.top_logprobs, 0, 0));
      const DeviceVector<cuda::RowSamplingParams> d_params(params);
      const cuda::SampledRows out{tokens.get(), logprobs.get(), top_ids.get(), top_logprobs.get()};
      const double seconds = testing::median_launch_seconds(kCalls, stream, [&](int) {
        ok(cuda::sample_rows(d_logits.get(), rows, kVocab, d_params.get(), {}, out, scratch.get(), stream));
      });
      std::printf("%5lld %-34s %10.2f %12.2f\n", static_cast<long long>(rows), v.name, seconds * 1e6,
                  argmax * 1e6);
    }
    for (const int32_t token : tokens.read()) ASSERT_GE(token, 0);
  }
  cudaStreamDestroy(stream);
}

#endif  // REALIZAR_HAVE_CUDA

}  // namespace
}  // namespace realizar
