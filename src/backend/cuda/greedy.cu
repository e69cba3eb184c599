// Greedy token selection on the device (kernels.h, argmax_rows): one CTA per logits row, so that
// a decode step hands back one token id per sequence instead of its vocab_size logits.
#include <cuda_runtime.h>

#include <cfloat>
#include <cstdint>

#include "backend/cuda/kernels.h"
#include "backend/cuda/launch.cuh"

namespace realizar::cuda {
namespace {

constexpr int kThreads = 1024;

// A candidate: its logit and index; index kArgmaxAllNegativeInfinity while none beats -inf.
struct Best {
  float logit;
  int32_t index;
};

// The Sampler's order (sampling.h): the larger logit first, the lower id among equal ones.
__device__ __forceinline__ Best better(Best a, Best b) {
  if (b.index < 0) return a;
  if (a.index < 0) return b;
  return (b.logit > a.logit || (b.logit == a.logit && b.index < a.index)) ? b : a;
}

__device__ __forceinline__ Best warp_best(Best b) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) {
    const Best other{__shfl_xor_sync(0xFFFFFFFFu, b.logit, offset),
                     __shfl_xor_sync(0xFFFFFFFFu, b.index, offset)};
    b = better(b, other);
  }
  return b;
}

__global__ void __launch_bounds__(kThreads) argmax_rows_kernel(const float* logits, int64_t vocab, int32_t* out) {
  wait_then_allow_next_kernel();
  const float* row = logits + static_cast<int64_t>(blockIdx.x) * vocab;
  Best best{-FLT_MAX, kArgmaxAllNegativeInfinity};
  bool nan = false;
  // Ascending indices per thread with a strict comparison: the first of equal logits is kept.
  for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
    const float logit = row[i];
    nan |= logit != logit;
    if (logit > -INFINITY && (best.index < 0 || logit > best.logit)) best = Best{logit, static_cast<int32_t>(i)};
  }
  __shared__ Best warp_results[kThreads / 32];
  __shared__ int any_nan;
  if (threadIdx.x == 0) any_nan = 0;
  __syncthreads();
  if (nan) any_nan = 1;
  best = warp_best(best);
  if (threadIdx.x % 32 == 0) warp_results[threadIdx.x / 32] = best;
  __syncthreads();
  if (threadIdx.x >= 32) return;
  best = warp_best(warp_results[threadIdx.x]);
  if (threadIdx.x == 0) out[blockIdx.x] = any_nan != 0 ? kArgmaxNaN : best.index;
}

}  // namespace

void argmax_rows(const float* logits, int64_t rows, int64_t vocab, int32_t* out, cudaStream_t stream) {
  if (rows <= 0) return;
  check_launch(launch(argmax_rows_kernel, static_cast<unsigned>(rows), kThreads, stream, logits, vocab, out), "argmax_rows_kernel");
}

}  // namespace realizar::cuda
