// Device helpers shared by the kernels that write the copies of a linear layer's input
// (kernels.h, InputCopy): quantization of one 32-value block held by the lanes of a warp, and
// float16 stores.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

namespace realizar::cuda {

// A block of 32 values held kValues (1, 2 or 4) per lane by 32 / kValues consecutive lanes (lane group
// lane / (32 / kValues) holds block `block`, values in lane order). All 32 lanes of the warp must
// call (the reductions stay inside each lane group, so every group may pass its own block).
// Writes q[32 block ..] and ds[block] = {d, d * sum(q)} with d = max|v| / 127 and
// q = round-to-nearest-even(v * (1 / d)) (0 when d = 0): ggml's q8_1 scheme. A group whose
// `write` is false (a block past the end of the data) only takes part in the reductions.
template <int kValues>
__device__ __forceinline__ void store_q8_block(const float (&v)[kValues], int64_t block, int8_t* q,
                                               float2* ds, bool write = true) {
  static_assert(kValues == 1 || kValues == 2 || kValues == 4, "1, 2 or 4 values per lane");
  constexpr int kLanes = 32 / kValues;
  const int lane_in_block = threadIdx.x % kLanes;
  float amax = 0.0f;
#pragma unroll
  for (int i = 0; i < kValues; ++i) amax = fmaxf(amax, fabsf(v[i]));
#pragma unroll
  for (int offset = kLanes / 2; offset > 0; offset /= 2) amax = fmaxf(amax, __shfl_xor_sync(0xFFFFFFFFu, amax, offset));
  const float d = amax / 127.0f;
  const float inverse = d > 0.0f ? 1.0f / d : 0.0f;
  int value[kValues];
  int sum = 0;
#pragma unroll
  for (int i = 0; i < kValues; ++i) {
    value[i] = max(-127, min(127, __float2int_rn(v[i] * inverse)));
    sum += value[i];
  }
#pragma unroll
  for (int offset = kLanes / 2; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xFFFFFFFFu, sum, offset);
  if (!write) return;
  int8_t* out = q + block * 32 + lane_in_block * kValues;
  if constexpr (kValues == 4) {
    *reinterpret_cast<char4*>(out) = make_char4(static_cast<signed char>(value[0]), static_cast<signed char>(value[1]),
                                                static_cast<signed char>(value[2]), static_cast<signed char>(value[3]));
  } else if constexpr (kValues == 2) {
    *reinterpret_cast<char2*>(out) = make_char2(static_cast<signed char>(value[0]), static_cast<signed char>(value[1]));
  } else {
    out[0] = static_cast<int8_t>(value[0]);
  }
  if (lane_in_block == 0) ds[block] = make_float2(d, d * static_cast<float>(sum));
}

// One value per lane: the warp's 32 lanes hold block `block` (lane = element).
__device__ __forceinline__ void store_q8_block(float v, int64_t block, int8_t* q, float2* ds) {
  const float values[1] = {v};
  store_q8_block<1>(values, block, q, ds);
}

// The float16 copy (InputCopy::half) of kValues consecutive values at out[0, kValues).
template <int kValues>
__device__ __forceinline__ void store_halves(const float (&v)[kValues], void* out) {
  __half* h = static_cast<__half*>(out);
  if constexpr (kValues % 2 == 0) {
#pragma unroll
    for (int i = 0; i < kValues; i += 2) reinterpret_cast<__half2*>(h)[i / 2] = __floats2half2_rn(v[i], v[i + 1]);
  } else {
#pragma unroll
    for (int i = 0; i < kValues; ++i) h[i] = __float2half_rn(v[i]);
  }
}
__device__ __forceinline__ void store_half(float v, void* out, int64_t at) {
  static_cast<__half*>(out)[at] = __float2half_rn(v);
}

}  // namespace realizar::cuda
