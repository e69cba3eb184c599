// Device helper shared by the kernels that write int8 activations (kernels.h, ActivationsQ8):
// quantization of one 32-value block held one value per lane of a warp.
#pragma once

#include <cstdint>

namespace realizar::cuda {

// The calling warp's 32 lanes hold the values of block `block` (lane = element); all 32 lanes
// must call. Writes q[32 block + lane] and ds[block] = {d, d * sum(q)} with d = max|v| / 127 and
// q = round-to-nearest-even(v * (1 / d)) (0 when d = 0): ggml's q8_1 scheme.
__device__ __forceinline__ void store_q8_block(float v, int64_t block, int8_t* q, float2* ds) {
  const int lane = threadIdx.x % 32;
  float amax = fabsf(v);
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) amax = fmaxf(amax, __shfl_xor_sync(0xFFFFFFFFu, amax, offset));
  const float d = amax / 127.0f;
  const float inverse = d > 0.0f ? 1.0f / d : 0.0f;
  const int value = max(-127, min(127, __float2int_rn(v * inverse)));
  int sum = value;
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xFFFFFFFFu, sum, offset);
  q[block * 32 + lane] = static_cast<int8_t>(value);
  if (lane == 0) ds[block] = make_float2(d, d * static_cast<float>(sum));
}

}  // namespace realizar::cuda
