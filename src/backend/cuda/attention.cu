// Paged causal GQA attention of a step (kernels.h, `attention`): the launcher that decides which
// kernel serves which tokens, the decode kernel (tokens that attend one by one), the merge of split
// key ranges (flash-decoding) and the split plan. The tile kernel for prompt chunks lives in
// flash_attention.cu. Formulas as in the reference backend (src/backend/reference).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "backend/cuda/async_copy.cuh"
#include "backend/cuda/flash_attention.h"
#include "backend/cuda/kernels.h"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/q8_block.cuh"

namespace realizar::cuda {
namespace {

constexpr int kMaxGroup = 8;  // query heads per KV head
constexpr int kChunk = 32;    // keys per step of a warp: lane j scores key j

// kDims consecutive float16 values of a row (2 kDims-byte aligned for kDims = 1, 2, 4), loaded in
// one instruction where the alignment allows.
template <int kDims>
struct HalfDims {
  using Raw = std::conditional_t<kDims == 4, uint2, std::conditional_t<kDims == 2, uint32_t, uint16_t>>;
  static constexpr int kLoads = kDims == 3 ? 3 : 1;
  Raw raw[kLoads];
  // `count` of the kDims values exist (a lane past head_dim has none).
  __device__ void load(const __half* p, int count) {
    if constexpr (kDims == 3) {
#pragma unroll
      for (int d = 0; d < 3; ++d) raw[d] = d < count ? *reinterpret_cast<const uint16_t*>(p + d) : 0;
    } else {
      raw[0] = count > 0 ? *reinterpret_cast<const Raw*>(p) : Raw{};
    }
  }
  __device__ float at(int d) const {
    const __half_raw h{reinterpret_cast<const uint16_t*>(raw)[d]};
    return __half2float(__half(h));
  }
};

// Grid (decode tokens, KV heads, splits), one warp per query head of the KV head's group; CTA x
// serves step token decode_tokens[x] (x without the list). Each warp keeps its own online softmax (Milakov &
// Gimelshein 2018) over the split's keys, in chunks of 32. The CTA stages each chunk's key and
// value rows in shared memory with cp.async one chunk ahead, and every warp of the group reads
// them there: one copy of the rows per CTA instead of one per query head, and the next chunk's
// loads in flight while this one is computed. Per chunk, lane j dots key j's row with the query;
// then lane l accumulates dims [kDims l, kDims l + kDims) over the chunk's values. kDims =
// ceil(head_dim / 32). Measured on the H200 (docs/perf-notes.md): the previous version, each warp
// loading its rows from global memory itself, ran the 7B parallel-32 step's attention (576 keys)
// at 364 GB/s, 27 % of the step.
template <int kDims>
__global__ void __launch_bounds__(kMaxGroup * 32)
    decode_attention_kernel(AttentionParams p, const float* __restrict__ q, const __half* key_cache,
                            const __half* value_cache, AttentionStep step, float* partial_o,
                            float* partial_ml, float* out, InputCopy copy) {
  constexpr int kMaxDim = 32 * kDims;
  // Key rows padded by 16 bytes: the 16-byte reads of lanes j = 0..7 (one row each, same column)
  // then fall on distinct banks.
  constexpr int kKeyStride = kMaxDim + 8;
  __shared__ __align__(16) float q_s[kMaxGroup][kMaxDim];
  __shared__ __align__(16) __half keys_s[2][kChunk][kKeyStride];
  __shared__ __align__(16) __half values_s[2][kChunk][kMaxDim];
  wait_then_allow_next_kernel();
  const int t = step.decode_tokens != nullptr ? step.decode_tokens[blockIdx.x] : static_cast<int>(blockIdx.x);
  const int kv_head = blockIdx.y, split = blockIdx.z, splits = gridDim.z;
  const int group = p.head_count / p.head_count_kv, hd = p.head_dim;
  const int kv_dim = p.head_count_kv * hd;
  const int g = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int head = kv_head * group + g;
  const int length = step.positions[t] + 1;
  const int range = (length + splits - 1) / splits;
  const int begin = split * range, end = min(length, begin + range);
  const int32_t* table = step.block_tables + static_cast<int64_t>(step.seq_rows[t]) * (*step.table_stride);
  const float* qh = q + static_cast<int64_t>(t) * p.head_count * hd + head * hd;
  for (int d = lane; d < hd; d += 32) q_s[g][d] = qh[d] * p.scale;

  const __half* keys = key_cache + kv_head * hd;
  const __half* values = value_cache + kv_head * hd;
  // Rows [chunk, chunk + 32) clipped to the split, 16 bytes per copy (head_dim % 8 == 0).
  const int row_pieces = hd / 8;
  const auto stage = [&](int chunk, int buffer) {
    const int rows = min(kChunk, end - chunk);
    for (int i = threadIdx.x; i < rows * row_pieces; i += blockDim.x) {
      const int r = i / row_pieces, c = 8 * (i % row_pieces), j = chunk + r;
      const int64_t slot = static_cast<int64_t>(table[j / p.block_size]) * p.block_size + j % p.block_size;
      cp_async16(&keys_s[buffer][r][c], keys + slot * kv_dim + c);
      cp_async16(&values_s[buffer][r][c], values + slot * kv_dim + c);
    }
  };

  const int first_dim = kDims * lane;
  const int dims_here = max(0, min(kDims, hd - first_dim));
  float m = -INFINITY, l = 0.0f, o[kDims] = {};
  const int chunks = max(0, (end - begin + kChunk - 1) / kChunk);
  if (chunks > 0) stage(begin, 0);
  cp_async_commit();
  for (int c = 0; c < chunks; ++c) {
    const int chunk = begin + c * kChunk, buffer = c % 2;
    if (c + 1 < chunks) stage(chunk + kChunk, buffer ^ 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();  // chunk c (and, the first time, q_s) visible to every warp
    const int j = chunk + lane;
    // Score of key j.
    float s = -INFINITY;
    if (j < end) {
      const uint4* krow = reinterpret_cast<const uint4*>(keys_s[buffer][lane]);
      float dot = 0.0f;
#pragma unroll
      for (int piece = 0; piece < kMaxDim / 8; ++piece) {
        if (piece >= row_pieces) break;
        const uint4 raw = krow[piece];
        const float4 q0 = *reinterpret_cast<const float4*>(&q_s[g][8 * piece]);
        const float4 q1 = *reinterpret_cast<const float4*>(&q_s[g][8 * piece + 4]);
        const __half2* h2 = reinterpret_cast<const __half2*>(&raw);
        const float2 k0 = __half22float2(h2[0]), k1 = __half22float2(h2[1]);
        const float2 k2 = __half22float2(h2[2]), k3 = __half22float2(h2[3]);
        dot += q0.x * k0.x + q0.y * k0.y + q0.z * k1.x + q0.w * k1.y +
               q1.x * k2.x + q1.y * k2.y + q1.z * k3.x + q1.w * k3.y;
      }
      s = dot;
    }
    // Online softmax over the chunk.
    float chunk_max = s;
#pragma unroll
    for (int off = 16; off > 0; off /= 2) chunk_max = fmaxf(chunk_max, __shfl_xor_sync(0xFFFFFFFFu, chunk_max, off));
    const float new_m = fmaxf(m, chunk_max);
    const float correction = __expf(m - new_m);
    const float pj = j < end ? __expf(s - new_m) : 0.0f;
    float chunk_sum = pj;
#pragma unroll
    for (int off = 16; off > 0; off /= 2) chunk_sum += __shfl_xor_sync(0xFFFFFFFFu, chunk_sum, off);
    l = l * correction + chunk_sum;
    m = new_m;
#pragma unroll
    for (int d = 0; d < kDims; ++d) o[d] *= correction;
    // Values of the chunk's keys: lane l's dims of every row.
    const int keys_here = min(kChunk, end - chunk);
#pragma unroll
    for (int jj = 0; jj < kChunk; ++jj) {
      const float pk = __shfl_sync(0xFFFFFFFFu, pj, jj);
      if (jj < keys_here) {
        HalfDims<kDims> v;
        v.load(&values_s[buffer][jj][first_dim], dims_here);
#pragma unroll
        for (int d = 0; d < kDims; ++d) o[d] += pk * v.at(d);
      }
    }
    __syncthreads();  // every warp is done with `buffer` before chunk c + 2 is staged into it
  }

  if (splits == 1) {
    const int64_t at = static_cast<int64_t>(t) * p.head_count * hd + head * hd + first_dim;
    float v[kDims];
#pragma unroll
    for (int d = 0; d < kDims; ++d) {
      v[d] = o[d] / l;
      if (first_dim + d < hd) out[at + d] = v[d];
      if (first_dim + d < hd && copy.half != nullptr) store_half(v[d], copy.half, at + d);
    }
    // head_dim == 32 kDims: the warp's values are whole 32-value blocks, 32 / kDims lanes each.
    if constexpr (kDims != 3) {
      if (copy.q8.q != nullptr) {
        store_q8_block<kDims>(v, at / 32, copy.q8.q, reinterpret_cast<float2*>(copy.q8.ds));
      }
    }
  } else {
    const int64_t part = (static_cast<int64_t>(blockIdx.x) * splits + split) * p.head_count + head;
#pragma unroll
    for (int d = 0; d < kDims; ++d) {
      if (first_dim + d < hd) partial_o[part * hd + first_dim + d] = o[d];
    }
    if (lane == 0) {
      partial_ml[2 * part] = m;
      partial_ml[2 * part + 1] = l;
    }
  }
}

constexpr int kMergeThreads = 128;  // >= head_dim and >= kMaxAttentionSplits
static_assert(kMergeThreads >= kMaxAttentionSplits, "one merge thread per split");

// The maximum (kMax) or the sum over the merge CTA's threads; every thread gets the result.
template <bool kMax>
__device__ float merge_reduce(float v, float* scratch) {
  for (int offset = 16; offset > 0; offset /= 2) {
    const float other = __shfl_xor_sync(0xFFFFFFFFu, v, offset);
    v = kMax ? fmaxf(v, other) : v + other;
  }
  __syncthreads();  // scratch may still be read from a previous call
  if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = v;
  __syncthreads();
  float total = scratch[0];
  for (int w = 1; w < kMergeThreads / 32; ++w) total = kMax ? fmaxf(total, scratch[w]) : total + scratch[w];
  return total;
}

// Grid (partial row groups, heads): merges the `splits` partial states of one (token, head) into
// the output. Group x holds rows x * splits + s; its token is decode_tokens[x] (or x without the
// list; kTiles false), or
// token x % tile_tokens of tile x / tile_tokens (kTiles; groups past a tile's end exit). Thread s
// reads split s's (max, sum), so that the splits' reads are all in flight at once; then thread d
// sums dim d over the splits, weighted by exp(max_s - max). Both kernels write every row they are
// given, empty ranges as max -inf, sum 0 and zeros.
template <bool kTiles>
__global__ void __launch_bounds__(kMergeThreads)
    attention_merge_kernel(AttentionParams p, AttentionStep step, int tile_tokens, int splits,
                           const float* __restrict__ partial_o, const float* __restrict__ partial_ml,
                           float* out, InputCopy copy) {
  __shared__ float weight[kMaxAttentionSplits];
  __shared__ float scratch[kMergeThreads / 32];
  wait_then_allow_next_kernel();
  const int x = blockIdx.x, head = blockIdx.y, hd = p.head_dim;
  int t = 0;
  if constexpr (kTiles) {
    const int4 tile = reinterpret_cast<const int4*>(step.tiles)[x / tile_tokens];
    if (x % tile_tokens >= tile.y) return;  // the whole CTA: no barrier reached yet
    t = tile.x + x % tile_tokens;
  } else {
    t = step.decode_tokens != nullptr ? step.decode_tokens[x] : x;
  }
  const int64_t first = static_cast<int64_t>(x) * splits;
  const int s = threadIdx.x;
  float ms = -INFINITY, ls = 0.0f;
  if (s < splits) {
    ms = partial_ml[2 * ((first + s) * p.head_count + head)];
    ls = partial_ml[2 * ((first + s) * p.head_count + head) + 1];
  }
  const float mx = merge_reduce<true>(ms, scratch);  // finite: range 0 holds key 0, which every token sees
  const float f = ms == -INFINITY ? 0.0f : __expf(ms - mx);  // an empty range weighs nothing
  if (s < splits) weight[s] = f;
  const float total = merge_reduce<false>(ls * f, scratch);  // its barriers also publish weight[]
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float sum = 0.0f;
    // Independent loads, 16 in flight per thread (an empty range's row holds zeros, weight 0).
#pragma unroll 16
    for (int r = 0; r < splits; ++r) sum += partial_o[((first + r) * p.head_count + head) * hd + d] * weight[r];
    const float v = sum / total;
    const int64_t at = static_cast<int64_t>(t) * p.head_count * hd + head * hd + d;
    out[at] = v;
    if (copy.half != nullptr) store_half(v, copy.half, at);
    if (copy.q8.q != nullptr) {  // head_dim % 32 == 0: whole warps, one block each
      store_q8_block(v, at / 32, copy.q8.q, reinterpret_cast<float2*>(copy.q8.ds));
    }
  }
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

void check_attention_shape(const AttentionParams& p) {
  if (p.head_dim < 8 || p.head_dim > 128 || p.head_dim % 8 != 0) unhandled_case("attention", "head_dim", p.head_dim);
  if (p.head_count_kv < 1 || p.head_count % p.head_count_kv != 0) {
    unhandled_case("attention", "query heads not a multiple of the KV heads, query heads", p.head_count);
  }
  if (p.head_count / p.head_count_kv > kMaxGroup) {
    unhandled_case("attention", "query heads per KV head", p.head_count / p.head_count_kv);
  }
  if (p.block_size < 1) unhandled_case("attention", "KV block size", p.block_size);
}

void check_splits(const char* what, int splits, int64_t rows_needed, const AttentionScratch& scratch) {
  if (splits < 1 || splits > kMaxAttentionSplits) unhandled_case("attention", what, splits);
  if (splits > 1 && (rows_needed > scratch.rows || scratch.partial_o == nullptr || scratch.partial_ml == nullptr)) {
    unhandled_case("attention", "split partial rows beyond the scratch, rows", rows_needed);
  }
}

void enqueue_decode(const AttentionParams& p, const float* q, const __half* keys, const __half* values,
                    const AttentionStep& step, const AttentionPlan& plan, const AttentionScratch& scratch,
                    float* out, InputCopy copy, cudaStream_t stream) {
  const int splits = plan.decode_splits;
  const dim3 grid(static_cast<unsigned>(plan.decode_tokens), static_cast<unsigned>(p.head_count_kv),
                  static_cast<unsigned>(splits));
  const unsigned threads = static_cast<unsigned>(32 * (p.head_count / p.head_count_kv));
  const InputCopy fused = splits > 1 ? InputCopy{} : copy;  // with splits the merge writes the copy
  auto run = [&](auto kernel) {
    check_launch(launch(kernel, grid, threads, stream, p, q, keys, values, step, scratch.partial_o,
                        scratch.partial_ml, out, fused),
                 "decode_attention_kernel");
  };
  switch ((p.head_dim + 31) / 32) {
    case 1: run(decode_attention_kernel<1>); break;
    case 2: run(decode_attention_kernel<2>); break;
    case 3: run(decode_attention_kernel<3>); break;
    case 4: run(decode_attention_kernel<4>); break;
    default: unhandled_case("attention", "head_dim", p.head_dim);
  }
  if (splits > 1) {
    const dim3 merge_grid(static_cast<unsigned>(plan.decode_tokens), static_cast<unsigned>(p.head_count));
    check_launch(launch(attention_merge_kernel<false>, merge_grid, kMergeThreads, stream, p, step, 0, splits,
                        scratch.partial_o, scratch.partial_ml, out, copy),
                 "attention_merge_kernel");
  }
}

}  // namespace

AttentionPlan plan_attention(const AttentionParams& p, const AttentionWork& work, int multiprocessors,
                             int64_t scratch_rows) {
  constexpr int64_t kDecodeSplitKeys = 128, kMaxDecodeSplits = 64, kTileSplitKeys = 256;
  AttentionPlan plan;
  plan.decode_tokens = work.decode_tokens;
  plan.tiles = work.tiles;
  const int64_t sms = std::max(multiprocessors, 1);
  if (work.decode_tokens > 0) {
    const int64_t ctas = work.decode_tokens * p.head_count_kv, target = 2 * sms;
    if (ctas < target && work.decode_max_length > kDecodeSplitKeys) {
      const int64_t splits = std::min({ceil_div(work.decode_max_length, kDecodeSplitKeys), ceil_div(target, ctas),
                                       kMaxDecodeSplits, scratch_rows / work.decode_tokens});
      plan.decode_splits = static_cast<int>(std::max<int64_t>(splits, 1));
    }
  }
  if (work.tiles > 0) {
    const int64_t ctas = work.tiles * p.head_count_kv;
    const int64_t tile_rows = work.tiles * flash_tile_tokens(p.head_count / std::max(p.head_count_kv, 1));
    const int64_t splits = std::min({sms / ctas, ceil_div(work.tile_max_length, kTileSplitKeys),
                                     int64_t{kMaxAttentionSplits}, scratch_rows / tile_rows});
    plan.tile_splits = static_cast<int>(std::max<int64_t>(splits, 1));
  }
  return plan;
}

void attention(const AttentionParams& p, const float* q, const void* key_cache, const void* value_cache,
               const AttentionStep& step, const AttentionPlan& plan, const AttentionScratch& scratch,
               float* out, InputCopy copy, cudaStream_t stream) {
  check_attention_shape(p);
  if (copy.q8.q != nullptr && (p.head_dim % 32 != 0 || plan.tiles > 0)) {
    unhandled_case("attention", plan.tiles > 0 ? "an int8 copy with tiles, tiles" : "an int8 copy with head_dim",
                   plan.tiles > 0 ? plan.tiles : p.head_dim);
  }
  const int group = p.head_count / p.head_count_kv;
  const __half* keys = static_cast<const __half*>(key_cache);
  const __half* values = static_cast<const __half*>(value_cache);
  if (plan.decode_tokens > 0) {
    check_splits("decode splits", plan.decode_splits, plan.decode_tokens * plan.decode_splits, scratch);
    enqueue_decode(p, q, keys, values, step, plan, scratch, out, copy, stream);
  }
  if (plan.tiles > 0) {
    const int64_t groups = plan.tiles * flash_tile_tokens(group);
    check_splits("tile splits", plan.tile_splits, groups * plan.tile_splits, scratch);
    enqueue_flash_attention(p, q, keys, values, step, plan.tiles, plan.tile_splits, scratch, out, copy.half, stream);
    if (plan.tile_splits > 1) {
      const dim3 merge_grid(static_cast<unsigned>(groups), static_cast<unsigned>(p.head_count));
      check_launch(launch(attention_merge_kernel<true>, merge_grid, kMergeThreads, stream, p, step,
                          flash_tile_tokens(group), plan.tile_splits, scratch.partial_o, scratch.partial_ml, out,
                          InputCopy{{}, copy.half}),
                   "attention_merge_kernel");
    }
  }
}

}  // namespace realizar::cuda
