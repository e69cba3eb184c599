// The decode-token part of `attention` (kernels.h): tokens that attend one by one, each against
// its sequence's keys in the paged cache, on the tensor cores (decode_attention.cu), their key
// ranges split over CTAs when that fills the GPU (flash-decoding) and the ranges merged by
// attention.cu's merge kernel. Plain C++17 like kernels.h. Why this kernel and its plan, measured
// against the warp-per-head kernel before it and an 8-warp variant: docs/perf-notes.md, "Decode
// attention at long contexts".
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "backend/cuda/kernels.h"

namespace realizar::cuda {

// The kernel's layout (decode_attention.cu): one CTA of kDecodeWarps warps per (token, KV head,
// key range), each warp with its own ring of kDecodeStages groups of kDecodeGroupKeys key and
// value rows, rows padded by 16 bytes; the CTAs that fit on one sm_90 multiprocessor by shared
// memory (228 KiB, 1 KiB reserved per CTA) and threads (2,048).
constexpr int kDecodeWarps = 4;
constexpr int kDecodeGroupKeys = 16;
constexpr int kDecodeStages = 3;
constexpr int decode_padded_dim(int head_dim) { return (head_dim + 31) / 32 * 32; }
constexpr int64_t decode_shared_bytes(int head_dim) {
  return int64_t{kDecodeWarps} * kDecodeStages * 2 * kDecodeGroupKeys * (decode_padded_dim(head_dim) + 8) * 2;
}
constexpr int decode_ctas_per_multiprocessor(int head_dim) {
  const int64_t by_shared = (228 * 1024) / (decode_shared_bytes(head_dim) + 1024);
  const int64_t by_threads = 2048 / (32 * kDecodeWarps);
  return static_cast<int>(by_shared < by_threads ? by_shared : by_threads);
}

// How many key ranges each of `tokens` decode tokens is split into when the longest attends to
// `max_length` keys: one wave of as many CTAs as fit on the multiprocessors at once
// (decode_ctas_per_multiprocessor; 2 per multiprocessor at head_dim 128, 4 at 64), rounded down
// so that no partial second wave starts; ranges of at least two 16-key groups per warp (128
// keys); within kMaxAttentionSplits and `scratch_rows` partial rows. 1 when tokens x KV heads
// CTAs already fill the wave or max_length is at most 128.
int decode_splits(const AttentionParams& p, int64_t tokens, int64_t max_length, int multiprocessors,
                  int64_t scratch_rows);

// Enqueues the decode kernel over `tokens` decode tokens (step.decode_tokens, or step tokens 0, 1,
// ... when that is null), each token's keys split into `splits` ranges, and the merge when
// splits > 1: writes out ([step tokens x q_dim] float32) and `copy` for those tokens (attention's
// contract). Throws realizar::Error, before any launch, for a shape `attention` refuses, a
// block_size not a multiple of 16 (a 16-key group never straddles a cache block), splits outside
// [1, kMaxAttentionSplits] or beyond scratch.rows, an int8 copy with head_dim not a multiple of
// 32; and for a failed launch.
void enqueue_decode(const AttentionParams& p, const float* q, const void* key_cache, const void* value_cache,
                    const AttentionStep& step, int64_t tokens, int splits, const AttentionScratch& scratch,
                    float* out, InputCopy copy, cudaStream_t stream);

// The kernel alone (decode_attention.cu): with splits == 1 it writes out and `copy`, otherwise
// each range's partial state to scratch row x * splits + s (x: the token's index among the decode
// tokens). Shape, block size, splits and scratch are checked by enqueue_decode.
void enqueue_decode_tensor_cores(const AttentionParams& p, const float* q, const void* key_cache,
                                 const void* value_cache, const AttentionStep& step, int64_t tokens, int splits,
                                 const AttentionScratch& scratch, float* out, InputCopy copy, cudaStream_t stream);

}  // namespace realizar::cuda
