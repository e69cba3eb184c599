// Token sampling on the device (sampling_kernels.h, sample_rows). Two kernels:
//   1. sample_chunks_kernel, one CTA per 4096-logit chunk of each row: the chunk's raw max and
//      sum of exponentials (for log-probabilities), its top-n raw candidates when the row asks
//      for top log-probabilities, then the row's penalties applied to the chunk's copy in shared
//      memory and its top-k penalized candidates (top-1 for greedy rows).
//   2. sample_merge_kernel, one CTA per row: the global top-k among the chunks' candidates (a
//      chunk holds at most k of the row's top k), ranked, then top-p, min-p, temperature and
//      the inverse-CDF draw exactly as Sampler::filter and Sampler::draw compute them.
// Selection is a radix select on a 64-bit key (the logit's order-preserving bits above the
// complement of the token id), so ties at the top-k boundary go to lower ids as on the host.
#include <cuda_runtime.h>

#include <cfloat>
#include <cstdint>

#include "backend/cuda/kernels.h"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/sampling_kernels.h"
#include "sampling/philox.h"

namespace realizar::cuda {
namespace {

constexpr int kThreads = 512;  // both kernels
constexpr int kWarps = kThreads / 32;
constexpr int kChunkLogits = 4096;  // logits per CTA of the chunk kernel
constexpr int kLogitsPerThread = kChunkLogits / kThreads;
static_assert(kChunkLogits % kThreads == 0);
static_assert(kChunkLogits >= kMaxDeviceTopK, "a full chunk must hold k candidates");

constexpr uint32_t kChunkHasNaN = 1;
constexpr uint32_t kChunkBadPenalty = 2;  // a penalty entry outside the vocabulary or count < 1

struct Candidate {
  float logit;
  int32_t id;
};

// What the chunk kernel leaves for the merge kernel about one chunk of a row.
struct ChunkSummary {
  float raw_max;   // the largest raw logit (-inf when none is larger)
  float raw_sum;   // sum of expf(raw - raw_max) over the chunk (0 when raw_max is -inf)
  uint32_t flags;  // kChunkHasNaN | kChunkBadPenalty
  uint32_t unused;
};

// A row's scratch: [chunks] summaries, [chunks x kMaxDeviceTopK] penalized candidates,
// [chunks x kMaxTopLogprobs] raw candidates; candidates unordered within a chunk.
struct RowScratch {
  ChunkSummary* summaries;
  Candidate* candidates;
  Candidate* raw_top;
};

__host__ __device__ constexpr int64_t chunk_count(int64_t vocab) {
  return (vocab + kChunkLogits - 1) / kChunkLogits;
}

__host__ __device__ constexpr size_t row_scratch_bytes(int64_t chunks) {
  return static_cast<size_t>(chunks) *
         (sizeof(ChunkSummary) + (kMaxDeviceTopK + kMaxTopLogprobs) * sizeof(Candidate));
}

__device__ RowScratch row_scratch(void* scratch, int row, int64_t chunks) {
  auto* base = static_cast<unsigned char*>(scratch) + static_cast<size_t>(row) * row_scratch_bytes(chunks);
  auto* summaries = reinterpret_cast<ChunkSummary*>(base);
  auto* candidates = reinterpret_cast<Candidate*>(summaries + chunks);
  return RowScratch{summaries, candidates, candidates + chunks * kMaxDeviceTopK};
}

// Logits [0, chunk_length(vocab, c)) of chunk c.
__device__ int chunk_length(int64_t vocab, int64_t chunk) {
  const int64_t left = vocab - chunk * kChunkLogits;
  return static_cast<int>(left < kChunkLogits ? left : kChunkLogits);
}

// The Sampler's rank order (ranks_before: larger logit first, lower id among equal logits) as
// one unsigned comparison: the logit's bits made order-preserving (negatives: all bits flipped;
// others: the sign bit set; -0 counted as +0, which compares equal to it) above the complement of
// the id. Distinct ids give distinct keys. A NaN ranks above +inf (such rows are reported, not
// sampled).
__device__ __forceinline__ uint64_t rank_key(float logit, int32_t id) {
  uint32_t bits = __float_as_uint(logit);
  if (bits == 0x80000000u) bits = 0;
  bits = (bits & 0x80000000u) != 0 ? ~bits : bits | 0x80000000u;
  return (static_cast<uint64_t>(bits) << 32) | ~static_cast<uint32_t>(id);
}

// exp(x) rounded to float through double: the host's std::exp(float) (glibc's expf, within 0.502
// ulp) gives the same float for all but about 0.06 % of arguments in [-60, 0] (measured on 2e7
// random ones), where CUDA's expf (within 2 ulp) would differ far more often, and the filters'
// and the draw's sums must reproduce the host's.
__device__ __forceinline__ float expf_like_host(float x) {
  return static_cast<float>(exp(static_cast<double>(x)));
}

// The Sampler's penalty (Sampler::apply_penalties) of a token seen `count` times in the window.
// Explicit roundings: no fused multiply-add, as the host computes it when built without
// -march=native (the GPU machine's binaries, CMakeLists.txt REALIZAR_NATIVE=OFF).
__device__ __forceinline__ float penalized(float logit, int32_t count, const RowSamplingParams& p) {
  logit = logit <= 0 ? __fmul_rn(logit, p.repeat_penalty) : __fdiv_rn(logit, p.repeat_penalty);
  return __fsub_rn(logit,
                   __fadd_rn(__fmul_rn(static_cast<float>(count), p.frequency_penalty), p.presence_penalty));
}

// Whether sample_rows serves the row (else its token is kSampleRejectedRow). Both kernels ask,
// so the chunk kernel never indexes scratch or penalty arrays with bad values.
__device__ bool row_is_served(const RowSamplingParams& p, int64_t vocab, int64_t penalty_capacity) {
  if (!(isfinite(p.temperature) && p.temperature >= 0)) return false;
  if (p.top_logprobs < -1 || p.top_logprobs > kMaxTopLogprobs) return false;
  if (p.penalty_count < 0 || p.penalty_offset < 0 ||
      static_cast<int64_t>(p.penalty_offset) + p.penalty_count > penalty_capacity) {
    return false;
  }
  if (p.penalty_count > 0 && !(isfinite(p.repeat_penalty) && p.repeat_penalty > 0 &&
                               isfinite(p.presence_penalty) && isfinite(p.frequency_penalty))) {
    return false;
  }
  if (p.temperature == 0) return true;
  return p.top_k >= 1 && p.top_k <= kMaxDeviceTopK && p.top_k < vocab && p.top_p >= 0 && p.top_p <= 1 &&
         p.log_min_p <= 0;  // NaN fails the comparisons
}

// ---- block-wide building blocks (every thread of the kThreads-thread CTA calls them) ----------

struct BlockShared {
  uint32_t histogram[256];  // radix-select digit counts; all zero between selections
  float floats[kWarps];     // per-warp partial results of block_reduce
  double doubles[kWarps];
  uint32_t words[kWarps];
  int selected_bin;  // select_threshold's result of one pass
  int selected_need;
  int selected_count;
  int collected;  // collect_at_least's counter
};

__device__ void clear_histogram(BlockShared& s) {
  for (int i = threadIdx.x; i < 256; i += kThreads) s.histogram[i] = 0;
  __syncthreads();
}

template <class T, class Op>
__device__ T warp_reduce(T value, Op op) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2)
    value = op(value, __shfl_xor_sync(0xFFFFFFFFu, value, offset));
  return value;
}

// op over every thread's `value`, combined in a fixed order (deterministic); every thread gets it.
template <class T, class Op>
__device__ T block_reduce(T value, Op op, T* partials) {
  value = warp_reduce(value, op);
  if (threadIdx.x % 32 == 0) partials[threadIdx.x / 32] = value;
  __syncthreads();
  T result = partials[0];
  for (int w = 1; w < kWarps; ++w) result = op(result, partials[w]);
  __syncthreads();  // partials reusable
  return result;
}

struct Max {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};
struct Sum {
  template <class T>
  __device__ T operator()(T a, T b) const {
    return a + b;
  }
};
struct Or {
  __device__ uint32_t operator()(uint32_t a, uint32_t b) const { return a | b; }
};

// Warp 0's part of a radix-select pass: finds the digit bin holding the need-th largest of the
// keys counted in s.histogram (bins scanned from 255 down), records it with the count still
// needed from it and the bin's size, and clears the histogram.
__device__ void find_digit_bin(BlockShared& s, int need) {
  const int lane = static_cast<int>(threadIdx.x);
  int counts[8];  // lane l owns bins 255 - 8l - j, j < 8: descending digits
  int sum = 0;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const int bin = 255 - 8 * lane - j;
    counts[j] = static_cast<int>(s.histogram[bin]);
    s.histogram[bin] = 0;
    sum += counts[j];
  }
  int inclusive = sum;
#pragma unroll
  for (int offset = 1; offset < 32; offset *= 2) {
    const int below = __shfl_up_sync(0xFFFFFFFFu, inclusive, offset);
    if (lane >= offset) inclusive += below;
  }
  int above = inclusive - sum;  // keys in the bins of lower lanes (larger digits)
  if (above < need && need <= inclusive) {
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      if (above + counts[j] >= need) {
        s.selected_bin = 255 - 8 * lane - j;
        s.selected_need = need - above;
        s.selected_count = counts[j];
        break;
      }
      above += counts[j];
    }
  }
}

// Indices a thread visits per round of select_threshold and collect_at_least: their keys are
// loaded together (one memory latency per round when they come from global memory).
constexpr int kBatch = 4;

// The index of batch entry b of round `base` for this thread: every i < n once over the rounds.
__device__ __forceinline__ int batch_index(int base, int b) {
  return base + b * kThreads + static_cast<int>(threadIdx.x);
}

// The k-th largest of the distinct keys key_at(i), i < n: exactly k of them are >= the result
// (0 when k >= n: all are). Radix select (8-bit digits from the top) over the keys that share the
// digits chosen so far; stops as soon as the chosen bin is taken whole. Needs s.histogram zero
// (and leaves it so).
template <class KeyAt>
__device__ uint64_t select_threshold(const KeyAt& key_at, int n, int k, BlockShared& s) {
  if (k >= n) return 0;
  const int lane = static_cast<int>(threadIdx.x % 32);
  uint64_t prefix = 0, mask = 0;
  int need = k;
  for (int shift = 56; shift >= 0; shift -= 8) {
    for (int base = 0; base < n; base += kThreads * kBatch) {
      int digits[kBatch];
#pragma unroll
      for (int b = 0; b < kBatch; ++b) {
        const int i = batch_index(base, b);
        const uint64_t key = i < n ? key_at(i) : 0;
        digits[b] = i < n && (key & mask) == prefix ? static_cast<int>((key >> shift) & 0xFF) : -1;
      }
#pragma unroll
      for (int b = 0; b < kBatch; ++b) {
        // One shared-memory atomic per distinct digit of the warp: logits crowd into few bins.
        const unsigned peers = __match_any_sync(0xFFFFFFFFu, digits[b]);
        if (digits[b] >= 0 && lane == __ffs(peers) - 1) atomicAdd(&s.histogram[digits[b]], __popc(peers));
      }
    }
    __syncthreads();
    if (threadIdx.x < 32) find_digit_bin(s, need);
    __syncthreads();
    prefix |= static_cast<uint64_t>(s.selected_bin) << shift;
    mask |= uint64_t{0xFF} << shift;
    need = s.selected_need;
    if (s.selected_count == need) break;
  }
  return prefix;
}

// emit(i, slot) for every i < n with key_at(i) >= threshold, slots 0, 1, ... in no particular
// order, at most `limit` of them; returns how many were emitted.
template <class KeyAt, class Emit>
__device__ int collect_at_least(const KeyAt& key_at, int n, uint64_t threshold, int limit, const Emit& emit,
                                BlockShared& s) {
  const int lane = static_cast<int>(threadIdx.x % 32);
  if (threadIdx.x == 0) s.collected = 0;
  __syncthreads();
  for (int base = 0; base < n; base += kThreads * kBatch) {
    bool take[kBatch];
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      const int i = batch_index(base, b);
      take[b] = i < n && key_at(i) >= threshold;
    }
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      const unsigned takers = __ballot_sync(0xFFFFFFFFu, take[b]);
      int first = 0;
      if (lane == 0 && takers != 0) first = atomicAdd(&s.collected, __popc(takers));
      first = __shfl_sync(0xFFFFFFFFu, first, 0);
      const int slot = first + __popc(takers & ((1u << lane) - 1));
      if (take[b] && slot < limit) emit(batch_index(base, b), slot);
    }
  }
  __syncthreads();
  const int count = min(s.collected, limit);
  __syncthreads();  // s.collected reusable
  return count;
}

// order[r] = the index of the r-th largest of keys[0, count) (distinct keys, count <= kThreads).
__device__ void rank_order(const uint64_t* keys, int count, int* order) {
  if (static_cast<int>(threadIdx.x) < count) {
    const uint64_t key = keys[threadIdx.x];
    int rank = 0;
    for (int j = 0; j < count; ++j) rank += keys[j] > key;
    order[rank] = static_cast<int>(threadIdx.x);
  }
  __syncthreads();
}

// ---- kernel 1: per-chunk statistics and candidates ------------------------------------------

// Three CTAs per multiprocessor (40 registers): rows x chunks CTAs run in waves at 32-64 rows.
__global__ void __launch_bounds__(kThreads, 3)
    sample_chunks_kernel(const float* logits, int64_t vocab, const RowSamplingParams* params,
                         PenaltyWindows penalties, void* scratch) {
  __shared__ float chunk[kChunkLogits];
  __shared__ BlockShared s;
  wait_then_allow_next_kernel();
  const int64_t chunks = gridDim.x;
  const int row = static_cast<int>(blockIdx.y);
  const int64_t begin = static_cast<int64_t>(blockIdx.x) * kChunkLogits;
  const int length = chunk_length(vocab, blockIdx.x);
  const float* in = logits + static_cast<int64_t>(row) * vocab + begin;
  const RowSamplingParams p = params[row];
  clear_histogram(s);

  float values[kLogitsPerThread];
  float thread_max = -INFINITY;
  bool nan = false;
#pragma unroll
  for (int j = 0; j < kLogitsPerThread; ++j) {
    const int i = static_cast<int>(threadIdx.x) + j * kThreads;
    values[j] = i < length ? in[i] : -INFINITY;
    if (i < length) chunk[i] = values[j];
    nan |= values[j] != values[j];
    thread_max = fmaxf(thread_max, values[j]);
  }
  const float raw_max = block_reduce(thread_max, Max{}, s.floats);
  float thread_sum = 0;
  if (raw_max > -INFINITY) {
#pragma unroll
    for (int j = 0; j < kLogitsPerThread; ++j) thread_sum += expf(values[j] - raw_max);  // 0 past the end
  }
  const float raw_sum = block_reduce(thread_sum, Sum{}, s.floats);
  uint32_t flags = block_reduce(nan ? kChunkHasNaN : 0u, Or{}, s.words);

  const RowScratch out = row_scratch(scratch, row, chunks);
  if (row_is_served(p, vocab, penalties.capacity)) {
    const auto key_at = [&](int i) { return rank_key(chunk[i], static_cast<int32_t>(begin + i)); };
    if (p.top_logprobs > 0) {
      const uint64_t threshold = select_threshold(key_at, length, p.top_logprobs, s);
      const auto keep = [&](int i, int slot) {
        out.raw_top[blockIdx.x * kMaxTopLogprobs + slot] =
            Candidate{chunk[i], static_cast<int32_t>(begin + i)};
      };
      collect_at_least(key_at, length, threshold, kMaxTopLogprobs, keep, s);
    }
    // The window's tokens are distinct (penalty_window), so no two threads write one logit.
    bool bad_penalty = false;
    for (int e = static_cast<int>(threadIdx.x); e < p.penalty_count; e += kThreads) {
      const int32_t token = penalties.tokens[p.penalty_offset + e];
      const int32_t count = penalties.counts[p.penalty_offset + e];
      if (token < 0 || token >= vocab || count < 1) {
        bad_penalty = true;
      } else if (token >= begin && token < begin + length) {
        chunk[token - begin] = penalized(chunk[token - begin], count, p);
      }
    }
    flags |= block_reduce(bad_penalty ? kChunkBadPenalty : 0u, Or{}, s.words);  // also orders the writes
    const int k = p.temperature > 0 ? p.top_k : 1;
    const uint64_t threshold = select_threshold(key_at, length, k, s);
    const auto keep = [&](int i, int slot) {
      out.candidates[blockIdx.x * kMaxDeviceTopK + slot] =
          Candidate{chunk[i], static_cast<int32_t>(begin + i)};
    };
    collect_at_least(key_at, length, threshold, k, keep, s);
  }
  if (threadIdx.x == 0) out.summaries[blockIdx.x] = ChunkSummary{raw_max, raw_sum, flags, 0};
}

// ---- kernel 2: per-row merge, filters and draw ------------------------------------------------

// The merge kernel's shared memory: the row's top k candidates, then in rank order.
struct MergeShared {
  BlockShared block;
  uint64_t keys[kMaxDeviceTopK];
  Candidate picked[kMaxDeviceTopK];  // collected, unordered
  int order[kMaxDeviceTopK];         // order[r]: index into picked of rank r
  float logits[kMaxDeviceTopK];      // rank order from here on
  int32_t ids[kMaxDeviceTopK];
  float top_p_terms[kMaxDeviceTopK];  // expf(l - max): the top-p probabilities, unnormalized
  float weights[kMaxDeviceTopK];      // expf((l - max) / T): the draw's weights
  double cumulative[kMaxDeviceTopK];
  int32_t token;
};

// The merged candidates of a row: `per_chunk` (k or n) per chunk at stride `stride`, the last
// chunk holding min(per_chunk, its length).
struct ChunkCandidates {
  const Candidate* base;
  int stride;
  int per_chunk;
  int full_chunks;  // all but the last
  int count;        // per_chunk * full_chunks + the last chunk's
  __device__ Candidate at(int i) const {
    const int chunk = i < full_chunks * per_chunk ? i / per_chunk : full_chunks;
    return base[chunk * stride + (i - chunk * per_chunk)];
  }
  __device__ uint64_t key(int i) const {
    const Candidate c = at(i);
    return rank_key(c.logit, c.id);
  }
};

__device__ ChunkCandidates chunk_candidates(const Candidate* base, int stride, int per_chunk, int64_t vocab) {
  const int chunks = static_cast<int>(chunk_count(vocab));
  const int last = min(per_chunk, chunk_length(vocab, chunks - 1));
  return ChunkCandidates{base, stride, per_chunk, chunks - 1, (chunks - 1) * per_chunk + last};
}

// The k best of the candidates into m.logits / m.ids in rank order; returns k.
__device__ int rank_best(const ChunkCandidates& candidates, int k, MergeShared& m) {
  const auto key_at = [&](int i) { return candidates.key(i); };
  const uint64_t threshold = select_threshold(key_at, candidates.count, k, m.block);
  const auto keep = [&](int i, int slot) {
    const Candidate c = candidates.at(i);
    m.picked[slot] = c;
    m.keys[slot] = rank_key(c.logit, c.id);
  };
  const int count = collect_at_least(key_at, candidates.count, threshold, k, keep, m.block);
  rank_order(m.keys, count, m.order);
  if (static_cast<int>(threadIdx.x) < count) {
    const Candidate c = m.picked[m.order[threadIdx.x]];
    m.logits[threadIdx.x] = c.logit;
    m.ids[threadIdx.x] = c.id;
  }
  __syncthreads();
  return count;
}

// The smallest i in [0, n) with done(i), n when none (done monotone: false then true).
template <class Done>
__device__ int first_where(int n, const Done& done) {
  int low = 0, high = n;
  while (low < high) {
    const int mid = (low + high) / 2;
    if (done(mid)) {
      high = mid;
    } else {
      low = mid + 1;
    }
  }
  return low;
}

// Sampler::filter (top-p over the top-k survivors, then min-p) and Sampler::draw on the `count`
// ranked candidates, on thread 0 where the sums are sequential as on the host; returns the token.
__device__ int32_t filter_and_draw(const RowSamplingParams& p, int count, MergeShared& m) {
  const float max_logit = m.logits[0];
  const float inverse_temperature = __fdiv_rn(1.0f, p.temperature);
  for (int r = static_cast<int>(threadIdx.x); r < count; r += kThreads) {
    const float shifted = __fsub_rn(m.logits[r], max_logit);
    m.top_p_terms[r] = expf_like_host(shifted);
    m.weights[r] = expf_like_host(__fmul_rn(shifted, inverse_temperature));
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    // min-p drops a suffix of the rank order: logits below max + log(min_p).
    const float min_p_floor = __fadd_rn(max_logit, p.log_min_p);
    int survivors = first_where(count, [&](int r) { return m.logits[r] < min_p_floor; });
    if (p.top_p < 1) {
      // Normalized over all top-k survivors (min-p's too), the shortest prefix reaching top_p.
      double total = 0;
      for (int r = 0; r < count; ++r) m.cumulative[r] = total += m.top_p_terms[r];
      const double target = static_cast<double>(p.top_p) * total;
      const int reached = first_where(count, [&](int r) { return m.cumulative[r] >= target; });
      survivors = min(survivors, reached + 1);
    }
    double total = 0;
    for (int r = 0; r < survivors; ++r) m.cumulative[r] = total += m.weights[r];
    const uint64_t seed = (static_cast<uint64_t>(p.seed_high) << 32) | p.seed_low;
    const auto position =
        static_cast<int64_t>((static_cast<uint64_t>(p.position_high) << 32) | p.position_low);
    const double threshold = sampling_uniform(seed, position, 0) * total;
    const int pick = first_where(survivors, [&](int r) { return threshold < m.cumulative[r]; });
    m.token = m.ids[min(pick, survivors - 1)];  // past the end only through rounding, as on the host
  }
  __syncthreads();
  return m.token;
}

__global__ void __launch_bounds__(kThreads)
    sample_merge_kernel(const float* logits, int64_t vocab, const RowSamplingParams* params,
                        int64_t penalty_capacity, SampledRows out, void* scratch) {
  __shared__ MergeShared m;
  wait_then_allow_next_kernel();
  const int row = static_cast<int>(blockIdx.x);
  const int64_t chunks = chunk_count(vocab);
  const RowSamplingParams p = params[row];
  const RowScratch in = row_scratch(scratch, row, chunks);
  clear_histogram(m.block);

  // log sum exp of the raw logits, from the chunks' (max, sum) pairs.
  float thread_max = -INFINITY;
  uint32_t thread_flags = 0;
  for (int64_t c = threadIdx.x; c < chunks; c += kThreads) {
    thread_max = fmaxf(thread_max, in.summaries[c].raw_max);
    thread_flags |= in.summaries[c].flags;
  }
  const float raw_max = block_reduce(thread_max, Max{}, m.block.floats);
  const uint32_t flags = block_reduce(thread_flags, Or{}, m.block.words);
  double thread_total = 0;
  for (int64_t c = threadIdx.x; c < chunks; c += kThreads) {
    const ChunkSummary summary = in.summaries[c];
    if (summary.raw_max > -INFINITY)
      thread_total += summary.raw_sum * exp(static_cast<double>(summary.raw_max) - raw_max);
  }
  const double log_sum_exp = raw_max + log(block_reduce(thread_total, Sum{}, m.block.doubles));

  int32_t token;
  if (!row_is_served(p, vocab, penalty_capacity) || (flags & kChunkBadPenalty) != 0) {
    token = kSampleRejectedRow;
  } else if ((flags & kChunkHasNaN) != 0) {
    token = kArgmaxNaN;
  } else {
    const bool greedy = p.temperature == 0;
    const int k = greedy ? 1 : p.top_k;
    const int count = rank_best(chunk_candidates(in.candidates, kMaxDeviceTopK, k, vocab), k, m);
    if (m.logits[0] == -INFINITY) {
      token = kArgmaxAllNegativeInfinity;
    } else {
      token = greedy ? m.ids[0] : filter_and_draw(p, count, m);
    }
  }
  if (threadIdx.x == 0) {
    out.tokens[row] = token;
    if (out.logprobs != nullptr) {
      const bool wanted = token >= 0 && p.top_logprobs >= 0;
      out.logprobs[row] = wanted ? static_cast<float>(logits[row * vocab + token] - log_sum_exp) : NAN;
    }
  }
  if (out.top_ids == nullptr || out.top_logprobs == nullptr) return;
  const int listed = token >= 0 && p.top_logprobs > 0
                         ? (p.top_logprobs < vocab ? p.top_logprobs : static_cast<int>(vocab))
                         : 0;
  if (listed > 0) rank_best(chunk_candidates(in.raw_top, kMaxTopLogprobs, p.top_logprobs, vocab), listed, m);
  for (int r = static_cast<int>(threadIdx.x); r < kMaxTopLogprobs; r += kThreads) {
    out.top_ids[row * kMaxTopLogprobs + r] = r < listed ? m.ids[r] : -1;
    out.top_logprobs[row * kMaxTopLogprobs + r] =
        r < listed ? static_cast<float>(m.logits[r] - log_sum_exp) : NAN;
  }
}

}  // namespace

size_t sample_rows_scratch_bytes(int64_t max_rows, int64_t vocab) {
  if (max_rows <= 0 || vocab <= 0) return 0;
  return static_cast<size_t>(max_rows) * row_scratch_bytes(chunk_count(vocab));
}

cudaError_t sample_rows(const float* logits, int64_t rows, int64_t vocab, const RowSamplingParams* params,
                        PenaltyWindows penalties, SampledRows out, void* scratch, cudaStream_t stream) {
  if (rows <= 0) return cudaSuccess;
  if (rows > 65535 || vocab <= 0 || vocab > INT32_MAX || logits == nullptr || params == nullptr ||
      out.tokens == nullptr || scratch == nullptr || penalties.capacity < 0 ||
      (penalties.capacity > 0 && (penalties.tokens == nullptr || penalties.counts == nullptr))) {
    return cudaErrorInvalidValue;
  }
  const auto chunks = static_cast<unsigned>(chunk_count(vocab));
  const cudaError_t status = launch(sample_chunks_kernel, dim3(chunks, static_cast<unsigned>(rows)), kThreads,
                                    stream, logits, vocab, params, penalties, scratch);
  if (status != cudaSuccess) return status;
  return launch(sample_merge_kernel, static_cast<unsigned>(rows), kThreads, stream, logits, vocab, params,
                penalties.capacity, out, scratch);
}

}  // namespace realizar::cuda
