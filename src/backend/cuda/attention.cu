// Paged causal GQA attention of a step (kernels.h, `attention`): the launcher that decides which
// kernel serves which tokens, the decode tokens' launch (decode_attention.h, enqueue_decode), the
// merge of split key ranges (flash-decoding) and the split plan. The decode kernel and its split
// plan live in decode_attention.cu, the tile kernel for prompt chunks in flash_attention.cu.
// Formulas as in the reference backend (src/backend/reference).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include "backend/cuda/decode_attention.h"
#include "backend/cuda/flash_attention.h"
#include "backend/cuda/kernels.h"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/q8_block.cuh"

namespace realizar::cuda {
namespace {

constexpr int kMaxGroup = 8;  // query heads per KV head

constexpr int kMergeThreads = 256;  // >= kMaxAttentionSplits, and 8 x the float4 columns of head_dim 128
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
// list; kTiles false), or token x % tile_tokens of tile x / tile_tokens (kTiles; groups past a
// tile's end exit). Thread s reads split s's (max, sum), so that the splits' reads are all in
// flight at once. Then the head's dims are read as float4 columns: thread (slice, column) sums
// column `column` over the splits s = slice, slice + slices, ..., weighted by exp(max_s - max), so
// that every thread has its few loads in flight together (one dim per thread over all splits was
// 64 dependent rounds at 64 splits), and warp 0 adds the slices. The decode and tile kernels write
// every row they are given, empty ranges as max -inf, sum 0 and zeros.
template <bool kTiles>
__global__ void __launch_bounds__(kMergeThreads)
    attention_merge_kernel(AttentionParams p, AttentionStep step, int tile_tokens, int splits,
                           const float* __restrict__ partial_o, const float* __restrict__ partial_ml,
                           float* out, InputCopy copy) {
  __shared__ float weight[kMaxAttentionSplits];
  __shared__ float scratch[kMergeThreads / 32];
  __shared__ float4 slice_sums[kMergeThreads];
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

  // head_dim % 8 == 0: rows of float4 columns, 16-byte aligned.
  const int columns = hd / 4, slices = kMergeThreads / columns;
  const int column = threadIdx.x % columns, slice = threadIdx.x / columns;
  float4 sum = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  if (slice < slices) {
#pragma unroll 8
    for (int r = slice; r < splits; r += slices) {  // an empty range's row holds zeros, weight 0
      const float4 v = reinterpret_cast<const float4*>(partial_o + ((first + r) * p.head_count + head) * hd)[column];
      const float w = weight[r];
      sum.x += w * v.x;
      sum.y += w * v.y;
      sum.z += w * v.z;
      sum.w += w * v.w;
    }
  }
  slice_sums[threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.x >= 32) return;
  // Warp 0: lane i < columns writes dims [4 i, 4 i + 4); lanes 8b .. 8b + 7 hold 32-value block b.
  const int lane = threadIdx.x;
  const bool here = lane < columns;
  float v[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  if (here) {
    for (int k = 0; k < slices; ++k) {
      const float4 part = slice_sums[k * columns + lane];
      v[0] += part.x;
      v[1] += part.y;
      v[2] += part.z;
      v[3] += part.w;
    }
    for (float& value : v) value /= total;
  }
  const int64_t at = static_cast<int64_t>(t) * p.head_count * hd + head * hd + 4 * lane;
  if (here) {
    *reinterpret_cast<float4*>(out + at) = make_float4(v[0], v[1], v[2], v[3]);
    if (copy.half != nullptr) store_halves<4>(v, static_cast<__half*>(copy.half) + at);
  }
  if (copy.q8.q != nullptr) {  // head_dim % 32 == 0: whole blocks; lanes past the row only join the reductions
    store_q8_block<4>(v, (static_cast<int64_t>(t) * p.head_count * hd + head * hd) / 32 + lane / 8, copy.q8.q,
                      reinterpret_cast<float2*>(copy.q8.ds), here);
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

}  // namespace

void enqueue_decode(const AttentionParams& p, const float* q, const void* key_cache, const void* value_cache,
                    const AttentionStep& step, int64_t tokens, int splits, const AttentionScratch& scratch,
                    float* out, InputCopy copy, cudaStream_t stream) {
  check_attention_shape(p);
  if (copy.q8.q != nullptr && p.head_dim % 32 != 0) unhandled_case("attention", "an int8 copy with head_dim", p.head_dim);
  if (p.block_size % kDecodeGroupKeys != 0) {
    unhandled_case("attention", "decode tokens with a KV block size not a multiple of 16, block size", p.block_size);
  }
  check_splits("decode splits", splits, tokens * splits, scratch);
  enqueue_decode_tensor_cores(p, q, key_cache, value_cache, step, tokens, splits, scratch, out, copy, stream);
  if (splits > 1) {
    const dim3 merge_grid(static_cast<unsigned>(tokens), static_cast<unsigned>(p.head_count));
    check_launch(launch(attention_merge_kernel<false>, merge_grid, kMergeThreads, stream, p, step, 0, splits,
                        scratch.partial_o, scratch.partial_ml, out, copy),
                 "attention_merge_kernel");
  }
}

AttentionPlan plan_attention(const AttentionParams& p, const AttentionWork& work, int multiprocessors,
                             int64_t scratch_rows) {
  constexpr int64_t kTileSplitKeys = 256;
  AttentionPlan plan;
  plan.decode_tokens = work.decode_tokens;
  plan.tiles = work.tiles;
  const int64_t sms = std::max(multiprocessors, 1);
  plan.decode_splits = decode_splits(p, work.decode_tokens, work.decode_max_length, multiprocessors, scratch_rows);
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
  if (plan.decode_tokens > 0) {
    enqueue_decode(p, q, key_cache, value_cache, step, plan.decode_tokens, plan.decode_splits, scratch, out, copy,
                   stream);
  }
  if (plan.tiles > 0) {
    const int64_t groups = plan.tiles * flash_tile_tokens(group);
    check_splits("tile splits", plan.tile_splits, groups * plan.tile_splits, scratch);
    enqueue_flash_attention(p, q, key_cache, value_cache, step, plan.tiles, plan.tile_splits, scratch, out, copy.half, stream);
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
