// Device helpers shared by the kernels that read ggml-quantized blocks (int8_matvec.cu,
// dequant_mma.cu, quant_kernels.cu): the type ids, float16 fields and the 4-byte words of blocks that
// are only 2-byte aligned.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

namespace realizar::cuda {

// ggml type ids (realizar/tensor_type.h; that header is C++20, these files compile as C++17).
constexpr uint32_t kF32 = 0, kF16 = 1, kQ4_0 = 2, kQ4_1 = 3, kQ5_0 = 6, kQ8_0 = 8, kQ4_K = 12,
                   kQ5_K = 13, kQ6_K = 14, kBF16 = 30;
constexpr uint32_t kLowNibbles = 0x0F0F0F0Fu;

// The float16 at p (2-byte aligned).
__device__ __forceinline__ float half_at(const uint8_t* p) {
  return __half2float(__ushort_as_half(*reinterpret_cast<const uint16_t*>(p)));
}

// n little-endian 32-bit words starting at a 2-byte aligned address (the blocks of Q4_0, Q5_0,
// Q8_0 and Q6_K are only 2-byte aligned): aligned 4-byte loads joined by funnel shifts. At an
// address 2 past a word boundary the last two bytes come from a 2-byte load, so nothing past
// p + 4n is read (a 4-byte load there would read 2 bytes past the end of a matrix's last block).
template <int n>
__device__ __forceinline__ void load_words_2aligned(const uint8_t* p, uint32_t* out) {
  const uintptr_t address = reinterpret_cast<uintptr_t>(p);
  const uint32_t* aligned = reinterpret_cast<const uint32_t*>(address & ~uintptr_t{3});
  const uint32_t shift = static_cast<uint32_t>(address & 3) * 8;  // 0 or 16
  uint32_t w[n + 1];
#pragma unroll
  for (int i = 0; i < n; ++i) w[i] = __ldg(aligned + i);
  w[n] = shift != 0 ? __ldg(reinterpret_cast<const unsigned short*>(p + 4 * n - 2)) : 0u;
#pragma unroll
  for (int i = 0; i < n; ++i) out[i] = __funnelshift_r(w[i], w[i + 1], shift);
}

// Bits b0..b3 of `bits` moved to bit 4 of bytes 0..3 (the fifth bit of Q5_0 / Q5_K values).
__device__ __forceinline__ uint32_t spread_bit4(uint32_t bits) {
  return ((bits & 1u) << 4) | ((bits & 2u) << 11) | ((bits & 4u) << 18) | ((bits & 8u) << 25);
}

}  // namespace realizar::cuda
