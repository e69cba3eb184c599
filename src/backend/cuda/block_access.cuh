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

// The four words of a 16-byte load, in order.
__device__ __forceinline__ void words_of(const uint4& v, uint32_t* out) {
  out[0] = v.x;
  out[1] = v.y;
  out[2] = v.z;
  out[3] = v.w;
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

// The 16-byte head of a Q4_K or Q5_K block: d, dmin and the 12 bytes q[0..11] of packed 6-bit
// scales and mins (ggml's block_q4_K; unpacked as unpack_scale_min_k4 in realizar/quant_blocks.h
// does: sub-block j < 4 has scale q[j] & 63 and min q[j + 4] & 63, j >= 4 has the low nibbles of
// q[j + 4] with the top two bits of q[j - 4] and of q[j]). One 16-byte load instead of a load
// per scale byte.
struct KQuantHead {
  uint4 words;  // x: d, dmin (float16); y, z, w: q[0..3], q[4..7], q[8..11]
  __device__ static KQuantHead load(const uint8_t* blk) {  // blk: 16-byte aligned
    return {__ldg(reinterpret_cast<const uint4*>(blk))};
  }
  __device__ float d() const { return __half2float(__ushort_as_half(static_cast<uint16_t>(words.x & 0xFFFFu))); }
  __device__ float dmin() const { return __half2float(__ushort_as_half(static_cast<uint16_t>(words.x >> 16))); }
  // Bytes {scale, min, scale, min} of sub-blocks 2c and 2c + 1 (c = 0..3).
  __device__ uint32_t scale_min_pair(int c) const {
    const uint32_t scales = c < 2 ? words.y & 0x3F3F3F3Fu : (words.w & 0x0F0F0F0Fu) | ((words.y >> 2) & 0x30303030u);
    const uint32_t mins = c < 2 ? words.z & 0x3F3F3F3Fu : ((words.w >> 4) & 0x0F0F0F0Fu) | ((words.z >> 2) & 0x30303030u);
    return __byte_perm(scales, mins, c % 2 == 0 ? 0x5140u : 0x7362u);
  }
  // d * scale and dmin * min of sub-blocks 2c and 2c + 1: x = d * sc * q - dmin * m per sub-block.
  struct ScaledPair {
    float d0, m0, d1, m1;
  };
  __device__ ScaledPair scaled_pair(int c) const {
    const float scale = d(), min_scale = dmin();
    const uint32_t sm = scale_min_pair(c);
    return {scale * static_cast<float>(sm & 0xFFu), min_scale * static_cast<float>((sm >> 8) & 0xFFu),
            scale * static_cast<float>((sm >> 16) & 0xFFu), min_scale * static_cast<float>(sm >> 24)};
  }
};

// Bits b0..b3 of `bits` moved to bit 4 of bytes 0..3 (the fifth bit of Q5_0 / Q5_K values).
__device__ __forceinline__ uint32_t spread_bit4(uint32_t bits) {
  return ((bits & 1u) << 4) | ((bits & 2u) << 11) | ((bits & 4u) << 18) | ((bits & 8u) << 25);
}

// The integer levels of four elements, one per byte, from the words of a block that hold them:
// where each type keeps an element's bits (ggml's layouts, include/realizar/quant_blocks.h). The
// readers of every kernel decode through these; each applies its type's offset and scales itself.
//
// Nibble n (0: low, 1: high) of each byte: Q4_0, Q4_1 (n = 0 for elements 0-15, 1 for 16-31),
// Q4_K (n = the sub-block's parity).
__device__ __forceinline__ uint32_t nibble_levels(uint32_t qs, int n) { return (qs >> (4 * n)) & kLowNibbles; }
// Q5_0: nibble n with bit 4 from four consecutive bits of qh (`bits`, at b0..b3).
__device__ __forceinline__ uint32_t q5_0_levels(uint32_t qs, int n, uint32_t bits) {
  return nibble_levels(qs, n) | spread_bit4(bits);
}
// Q5_K, sub-block j (0..7): nibble j % 2 of qs with bit j of each qh byte as bit 4.
__device__ __forceinline__ uint32_t q5_k_levels(uint32_t qs, uint32_t qh, int j) {
  return nibble_levels(qs, j % 2) | (((qh >> j) & 0x01010101u) << 4);
}
// Q6_K, quarter r (0..3) of a 128-element half: nibble r / 2 of ql (the ql bytes of quarter r % 2)
// with bits 2r, 2r + 1 of each qh byte as bits 4-5; the element is the level minus 32.
__device__ __forceinline__ uint32_t q6_k_levels(uint32_t ql, uint32_t qh, int r) {
  return nibble_levels(ql, r / 2) | (((qh >> (2 * r)) & 0x03030303u) << 4);
}

}  // namespace realizar::cuda
