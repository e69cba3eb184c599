// The decode-token part of `attention` (kernels.h): tokens that attend one by one, each against
// its sequence's keys in the paged cache, their key ranges split over CTAs when that fills the GPU
// (flash-decoding) and the ranges merged by attention.cu's merge kernel. Plain C++17 like kernels.h.
//
// Several kernels are candidates (docs/perf-notes.md, "Decode attention at long contexts"): the
// benchmark (tests/gpu/cuda_attention_bench_test.cpp) and the tests call each through
// enqueue_decode; `attention` and plan_attention use kDecodeKernel. The losers are deleted once
// the benchmark has been run on the GPU.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "backend/cuda/kernels.h"

namespace realizar::cuda {

enum class DecodeKernel {
  // One CTA per (token, KV head, range), one warp per query head on the CUDA cores, 32-key
  // chunks staged in shared memory one chunk ahead (attention.cu; the kernel before these).
  kWarpPerHead,
  // One CTA per (token, KV head, range) of kWarps warps on the tensor cores, each warp streaming
  // its own 16-key groups (decode_attention.cu), 4 or 8 warps per CTA.
  kTensorCores4,
  kTensorCores8,
};
constexpr DecodeKernel kDecodeKernels[] = {DecodeKernel::kWarpPerHead, DecodeKernel::kTensorCores4,
                                           DecodeKernel::kTensorCores8};
const char* decode_kernel_name(DecodeKernel kernel);

// The decode kernel `attention` runs (switching candidates is this one line).
constexpr DecodeKernel kDecodeKernel = DecodeKernel::kTensorCores4;

// How many key ranges `kernel` splits each of `tokens` decode tokens into when the longest attends
// to `max_length` keys: enough CTAs to fill the GPU once (kWarpPerHead: 2 per multiprocessor,
// ranges of at least 128 keys, at most 64 ranges; the tensor-core kernels: as many CTAs as fit on
// the multiprocessors at once, decode_ctas_per_multiprocessor, ranges of at least two 16-key groups
// per warp), within kMaxAttentionSplits and `scratch_rows` partial rows.
int decode_splits(DecodeKernel kernel, const AttentionParams& p, int64_t tokens, int64_t max_length,
                  int multiprocessors, int64_t scratch_rows);

// Enqueues `kernel` over `tokens` decode tokens (step.decode_tokens, or step tokens 0, 1, ... when
// that is null), each token's keys split into `splits` ranges, and the merge when splits > 1:
// writes out ([step tokens x q_dim] float32) and `copy` for those tokens (attention's contract).
// Throws realizar::Error for a shape, split count or copy the kernel has no code for (as
// `attention`; the tensor-core kernels also need block_size a multiple of 16) and for a failed
// launch.
void enqueue_decode(DecodeKernel kernel, const AttentionParams& p, const float* q, const void* key_cache,
                    const void* value_cache, const AttentionStep& step, int64_t tokens, int splits,
                    const AttentionScratch& scratch, float* out, InputCopy copy, cudaStream_t stream);

// The tensor-core kernels' layout (decode_attention.cu): each warp's ring of kDecodeStages groups
// of kDecodeGroupKeys key and value rows, rows padded by 16 bytes; the CTAs that fit on one sm_90
// multiprocessor by shared memory (228 KiB, 1 KiB reserved per CTA) and threads (2,048).
constexpr int kDecodeGroupKeys = 16;
constexpr int kDecodeStages = 3;
constexpr int decode_padded_dim(int head_dim) { return (head_dim + 31) / 32 * 32; }
constexpr int64_t decode_shared_bytes(int warps, int head_dim) {
  return int64_t{warps} * kDecodeStages * 2 * kDecodeGroupKeys * (decode_padded_dim(head_dim) + 8) * 2;
}
constexpr int decode_ctas_per_multiprocessor(int warps, int head_dim) {
  const int64_t by_shared = (228 * 1024) / (decode_shared_bytes(warps, head_dim) + 1024);
  const int64_t by_threads = 2048 / (32 * warps);
  return static_cast<int>(by_shared < by_threads ? by_shared : by_threads);
}

// The tensor-core kernel alone (decode_attention.cu): `warps` 4 or 8; with splits == 1 it writes
// out and `copy`, otherwise each range's partial state to scratch row x * splits + s (x: the
// token's index among the decode tokens). Shape, splits and scratch are checked by the caller.
void enqueue_decode_tensor_cores(int warps, const AttentionParams& p, const float* q, const void* key_cache,
                                 const void* value_cache, const AttentionStep& step, int64_t tokens, int splits,
                                 const AttentionScratch& scratch, float* out, InputCopy copy, cudaStream_t stream);

}  // namespace realizar::cuda
