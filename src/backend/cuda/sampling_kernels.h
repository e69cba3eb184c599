// Token sampling on the device: the host Sampler's chain (include/realizar/sampling.h,
// src/sampling/sampler.cpp) applied to rows of logits that stay in device memory, so that a step
// hands back one token id per row (and log-probabilities when asked) instead of vocab_size
// logits. Plain C++17 (no CUDA syntax) like kernels.h, for the .cu files (nvcc) and the backend
// (g++, C++20); the host-side packing helpers at the end are C++20 and hidden from nvcc.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include <cuda_runtime_api.h>

#if !defined(__CUDACC__)
#include <span>

#include "realizar/sampling.h"
#endif

namespace realizar::cuda {

// The largest top_k sample_rows serves. Each CTA of the first kernel keeps its chunk's top_k
// candidates (kMaxDeviceTopK slots per chunk of scratch), and the merge kernel ranks at most this
// many in shared memory. Rows with top-k off or above the cap go to the host Sampler
// (device_samples below says which).
constexpr int kMaxDeviceTopK = 256;
// The most top log-probabilities a row can ask for (OpenAI's limit for top_logprobs).
constexpr int kMaxTopLogprobs = 20;
// Token code of a row whose parameters sample_rows does not serve (temperature > 0 with top_k
// outside [1, min(kMaxDeviceTopK, vocab - 1)], a parameter out of range, top_logprobs outside
// [-1, kMaxTopLogprobs], penalty entries outside their arrays or the vocabulary). The other codes
// are argmax_rows's (kernels.h): kArgmaxNaN, kArgmaxAllNegativeInfinity.
constexpr int32_t kSampleRejectedRow = -3;

// One row's sampling parameters, read by the kernels from device memory (so that a captured
// CUDA graph serves any parameters). 4-byte fields only: the host packs an array of them into
// the step's upload buffer. Semantics are SamplingParams's (sampling.h); row_sampling_params
// fills one from it.
struct RowSamplingParams {
  float temperature;        // 0: greedy (the largest penalized logit, lowest id among equal
                            // ones; top_k, top_p, min_p and the seed are then ignored); else > 0
  int32_t top_k;            // with temperature > 0: in [1, min(kMaxDeviceTopK, vocab - 1)]
  float top_p;              // in [0, 1]; 1: off
  float log_min_p;          // std::log(min_p) as the host computes it (float), -inf when min_p
                            // is 0 (off): min-p keeps logits >= max + log_min_p
  float repeat_penalty;     // > 0; 1: off
  float presence_penalty;   // finite
  float frequency_penalty;  // finite
  uint32_t seed_low;        // the request's 64-bit seed: low half
  uint32_t seed_high;       // high half
  uint32_t position_low;    // the sampled token's position in its sequence (int64): low half
  uint32_t position_high;   // high half; the draw is sampling_uniform(seed, position, 0)
  int32_t penalty_offset;   // first entry of the row's penalty window in the penalty arrays
  int32_t penalty_count;    // entries (distinct tokens) of the window; 0: no penalties
  int32_t top_logprobs;     // -1: no log-probabilities; 0: the chosen token's; n in [1, 20]:
                            // also the n most likely raw tokens'
};
static_assert(sizeof(RowSamplingParams) == 14 * 4 && std::is_trivially_copyable_v<RowSamplingParams>);

// The penalty windows of a step's rows: row r's distinct tokens and their occurrence counts
// (>= 1) are entries [penalty_offset, penalty_offset + penalty_count) of `tokens` and `counts`
// (penalty_window below makes them; a token listed twice in one window would have two threads
// write its logit). `capacity`: the arrays' length (0 when they are null).
struct PenaltyWindows {
  const int32_t* tokens = nullptr;
  const int32_t* counts = nullptr;
  int64_t capacity = 0;
};

// Where sample_rows writes each row's results. `tokens` is required; `logprobs` may be null, and
// `top_ids` with `top_logprobs` (both or neither), when no row asks for them: nothing is written
// there then.
struct SampledRows {
  int32_t* tokens = nullptr;      // [rows]: the token id, or kSampleRejectedRow, kArgmaxNaN,
                                  // kArgmaxAllNegativeInfinity
  float* logprobs = nullptr;      // [rows]: log softmax(raw logits)[token] when the row's
                                  // top_logprobs >= 0, else NaN (NaN for error rows)
  int32_t* top_ids = nullptr;     // [rows x kMaxTopLogprobs]: the row's min(top_logprobs, vocab)
                                  // most likely raw tokens in rank order (larger logit first,
                                  // lower id among equal ones), then -1
  float* top_logprobs = nullptr;  // [rows x kMaxTopLogprobs]: their log-probabilities, then NaN
};

// Bytes of the device scratch sample_rows needs for up to `max_rows` rows of `vocab` logits
// (about 83 KiB per row at vocab 151,936).
size_t sample_rows_scratch_bytes(int64_t max_rows, int64_t vocab);

// For each row r < rows of `logits` ([rows x vocab] float32, not modified), the token the host
// Sampler would pick: Sampler::sample(logits[r], params, history, position) with the row's
// parameters and penalty window, the same token except where u * total (the draw's threshold)
// falls within rounding of a cumulative-weight boundary. The filters' and the draw's arithmetic
// mirrors the host's (float logits and weights, double sums in rank order), with each weight
// exp(x) computed as float(exp(double(x))), which equals glibc's expf except for about 0.06 % of
// arguments (by 1 ulp; CUDA's expf is within 2 ulp). Log-probabilities are those of the raw
// logits (before penalties and temperature), as token_logprob and top_logprobs compute them
// (sampling.h), within float rounding. Rows are independent: a row's results do not depend on
// the other rows of the call.
//
// Two kernels (programmatic dependent launch, launch.cuh): one CTA per 4096-logit chunk of each
// row keeps the chunk's raw max and sum of exponentials, its top-n raw and top-k penalized
// candidates (radix selection in shared memory); one CTA per row merges its chunks' candidates,
// ranks the top k and runs top-p, min-p, temperature and the draw on them. `params`,
// `penalties` and `scratch` (sample_rows_scratch_bytes(rows, vocab) bytes, 16-byte aligned) are
// device memory. Returns the first launch error (cudaErrorInvalidValue for rows > 65535, vocab
// outside [1, 2^31), a null logits, params, tokens or scratch pointer), cudaSuccess when rows <= 0.
cudaError_t sample_rows(const float* logits, int64_t rows, int64_t vocab, const RowSamplingParams* params,
                        PenaltyWindows penalties, SampledRows out, void* scratch, cudaStream_t stream);

#if !defined(__CUDACC__)
// Host-side packing (the backend and tests, C++20).

// Whether sample_rows serves a row with these parameters: greedy rows always; others when
// 1 <= top_k <= kMaxDeviceTopK and top_k < vocab (top-k off, or above the cap, stays on the host).
bool device_samples(const SamplingParams& params, int64_t vocab);

// The device form of `params` for the token at `position`, with the row's penalty window at
// entries [penalty_offset, penalty_offset + penalty_count) of the step's penalty arrays. Throws
// realizar::Error as check_sampling_params does, and when top_logprobs is outside
// [-1, kMaxTopLogprobs].
RowSamplingParams row_sampling_params(const SamplingParams& params, int64_t position, int32_t top_logprobs,
                                      int32_t penalty_offset, int32_t penalty_count);

// The penalty window the host Sampler applies (the last params.penalty_last_n tokens of
// `history`, none when !params.has_penalties()) as distinct tokens in ascending order and their
// counts, written to tokens[0, n) and counts[0, n); returns n. Both arrays need room for
// min(history.size(), penalty_last_n) entries. Throws realizar::Error when a window token is
// outside [0, vocab).
int32_t penalty_window(const SamplingParams& params, std::span<const int32_t> history, int64_t vocab,
                       int32_t* tokens, int32_t* counts);
#endif

}  // namespace realizar::cuda
