// Block layouts of ggml's quantized tensor types, and IEEE half / bfloat16 conversions.
// Source: ggml/src/ggml-common.h (block_* structs) and the GGUF specification (ggml/docs/gguf.md).
// These structs are the one definition of each format: scalar, SIMD and CUDA code all read them.
// All multi-byte fields are little-endian, as in GGUF files. This header is C++17 and can be
// included by CUDA sources; functions are __host__ __device__ there.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define REALIZAR_HOST_DEVICE __host__ __device__
#else
#define REALIZAR_HOST_DEVICE
#endif

namespace realizar {

// IEEE 754 binary16 bits, as ggml stores block scales.
using ggml_half = uint16_t;

constexpr int QK4_0 = 32;
constexpr int QK4_1 = 32;
constexpr int QK5_0 = 32;
constexpr int QK5_1 = 32;
constexpr int QK8_0 = 32;
constexpr int QK8_1 = 32;
constexpr int QK_K = 256;         // elements per K-quant super-block
constexpr int K_SCALE_SIZE = 12;  // bytes of packed 6-bit scales and mins in Q4_K / Q5_K

// Q4_0: x = d * (q - 8), q the 4-bit value; element j in the low nibble of qs[j], j+16 in the high.
struct block_q4_0 {
  ggml_half d;
  uint8_t qs[QK4_0 / 2];
};
static_assert(sizeof(block_q4_0) == 18, "wrong q4_0 block size");

// Q4_1: x = d * q + m; nibbles laid out as Q4_0.
struct block_q4_1 {
  ggml_half d;
  ggml_half m;
  uint8_t qs[QK4_1 / 2];
};
static_assert(sizeof(block_q4_1) == 20, "wrong q4_1 block size");

// Q5_0: x = d * (q - 16); low 4 bits as Q4_0, bit 4 of element j is bit j of qh (little-endian).
struct block_q5_0 {
  ggml_half d;
  uint8_t qh[4];
  uint8_t qs[QK5_0 / 2];
};
static_assert(sizeof(block_q5_0) == 22, "wrong q5_0 block size");

// Q5_1: x = d * q + m; bits laid out as Q5_0.
struct block_q5_1 {
  ggml_half d;
  ggml_half m;
  uint8_t qh[4];
  uint8_t qs[QK5_1 / 2];
};
static_assert(sizeof(block_q5_1) == 24, "wrong q5_1 block size");

// Q8_0: x = d * q, q a signed byte.
struct block_q8_0 {
  ggml_half d;
  int8_t qs[QK8_0];
};
static_assert(sizeof(block_q8_0) == 34, "wrong q8_0 block size");

// Q8_1: x = d * q, with s = d * sum(q) kept for dot products against Q4_1/Q5_1 (activations).
struct block_q8_1 {
  ggml_half d;
  ggml_half s;
  int8_t qs[QK8_1];
};
static_assert(sizeof(block_q8_1) == 36, "wrong q8_1 block size");

// Q2_K: 16 sub-blocks of 16; x = d * (scales[i] & 0xF) * q - dmin * (scales[i] >> 4), q 2 bits.
// Element 128*h + 32*s + j is bits 2s..2s+1 of qs[32*h + j].
struct block_q2_K {
  uint8_t scales[QK_K / 16];
  uint8_t qs[QK_K / 4];
  ggml_half d;
  ggml_half dmin;
};
static_assert(sizeof(block_q2_K) == 84, "wrong q2_K block size");

// Q3_K: 16 sub-blocks of 16; x = d * (sc - 32) * (q - (hbit ? 0 : 4)), sc 6 bits packed in 12 bytes
// (low nibbles in bytes 0-7: scales 0-7 low, 8-15 high; top 2 bits of scale k at bits 2*(k/4) of
// byte 8 + k%4). Low 2 bits of q as Q2_K; hbit of element 32*b + j is bit b of hmask[j].
struct block_q3_K {
  uint8_t hmask[QK_K / 8];
  uint8_t qs[QK_K / 4];
  uint8_t scales[12];
  ggml_half d;
};
static_assert(sizeof(block_q3_K) == 110, "wrong q3_K block size");

// Q4_K: 8 sub-blocks of 32; x = d * sc * q - dmin * m, sc and m 6 bits packed in 12 bytes (see
// unpack_scale_min_k4). Element 64*c + 32*s + j is nibble s of qs[32*c + j].
struct block_q4_K {
  ggml_half d;
  ggml_half dmin;
  uint8_t scales[K_SCALE_SIZE];
  uint8_t qs[QK_K / 2];
};
static_assert(sizeof(block_q4_K) == 144, "wrong q4_K block size");

// Q5_K: as Q4_K with a fifth bit: bit 4 of element 32*b + j is bit b of qh[j].
struct block_q5_K {
  ggml_half d;
  ggml_half dmin;
  uint8_t scales[K_SCALE_SIZE];
  uint8_t qh[QK_K / 8];
  uint8_t qs[QK_K / 2];
};
static_assert(sizeof(block_q5_K) == 176, "wrong q5_K block size");

// Q6_K: 16 sub-blocks of 16; x = d * scales[i] * (q - 32), q 6 bits. In each half h (128 elements),
// element r has its low 4 bits in nibble r/64 of ql[64*h + r%64] and its top 2 bits at bits
// 2*(r/32) of qh[32*h + r%32].
struct block_q6_K {
  uint8_t ql[QK_K / 2];
  uint8_t qh[QK_K / 4];
  int8_t scales[QK_K / 16];
  ggml_half d;
};
static_assert(sizeof(block_q6_K) == 210, "wrong q6_K block size");

// Q8_K: x = d * q with a float32 scale; bsums[i] = sum of qs[16*i .. 16*i+15] (used by the K-quant
// dot products). What CPU kernels quantize activations to.
struct block_q8_K {
  float d;
  int8_t qs[QK_K];
  int16_t bsums[QK_K / 16];
};
static_assert(sizeof(block_q8_K) == 292, "wrong q8_K block size");

// Scale and min of sub-block j (0..7) of a Q4_K/Q5_K block: 6 bits each, packed in 12 bytes.
// j < 4: sc = q[j] & 63, m = q[j+4] & 63. j >= 4: the low 4 bits are in q[j+4] (sc low nibble,
// m high nibble) and the top 2 bits are the top bits of q[j-4] (sc) and q[j] (m).
REALIZAR_HOST_DEVICE inline void unpack_scale_min_k4(int j, const uint8_t* q, uint8_t* sc,
                                                     uint8_t* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

REALIZAR_HOST_DEVICE inline uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

REALIZAR_HOST_DEVICE inline float float_from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// IEEE binary16 -> binary32, exact for every input (subnormals, infinities, NaN payloads).
REALIZAR_HOST_DEVICE inline float fp16_to_fp32(ggml_half h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exponent = (h >> 10) & 0x1F;
  const uint32_t mantissa = h & 0x3FF;
  if (exponent == 0x1F) return float_from_bits(sign | 0x7F800000 | (mantissa << 13));
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24 is exact in binary32.
    const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
    return float_from_bits(sign | float_bits(magnitude));
  }
  return float_from_bits(sign | ((exponent + (127 - 15)) << 23) | (mantissa << 13));
}

// IEEE binary32 -> binary16 rounding to nearest, ties to even (what F16C's vcvtps2ph and numpy
// do). Overflow gives +-inf; NaN stays NaN (quiet bit set, top payload bits kept).
REALIZAR_HOST_DEVICE inline ggml_half fp32_to_fp16(float f) {
  uint32_t x = float_bits(f);
  const uint32_t sign = (x >> 16) & 0x8000;
  x &= 0x7FFFFFFF;
  if (x > 0x7F800000) return static_cast<ggml_half>(sign | 0x7E00 | ((x >> 13) & 0x3FF));
  if (x >= 0x477FF000) return static_cast<ggml_half>(sign | 0x7C00);  // >= 65520 rounds to inf
  if (x < 0x38800000) {
    // Below 2^-14 the result is subnormal: adding 0.5f makes the float adder round |f| to a
    // multiple of 2^-24 (the ulp of 0.5f), ties to even; the low bits are then the half mantissa.
    const float shifted = float_from_bits(x) + 0.5f;
    return static_cast<ggml_half>(sign | (float_bits(shifted) - float_bits(0.5f)));
  }
  const uint32_t odd = (x >> 13) & 1;
  x += (static_cast<uint32_t>(15 - 127) << 23) + 0xFFF + odd;  // rebias and round to even
  return static_cast<ggml_half>(sign | (x >> 13));
}

// bfloat16 (the top 16 bits of a binary32) -> binary32, exact.
REALIZAR_HOST_DEVICE inline float bf16_to_fp32(uint16_t b) {
  return float_from_bits(static_cast<uint32_t>(b) << 16);
}

// binary32 -> bfloat16 rounding to nearest, ties to even; NaN stays NaN with the quiet bit set
// (as ggml_compute_fp32_to_bf16 in ggml-impl.h). Overflow rounds to inf as IEEE requires.
REALIZAR_HOST_DEVICE inline uint16_t fp32_to_bf16(float f) {
  const uint32_t x = float_bits(f);
  if ((x & 0x7FFFFFFF) > 0x7F800000) return static_cast<uint16_t>((x >> 16) | 0x40);
  return static_cast<uint16_t>((x + 0x7FFF + ((x >> 16) & 1)) >> 16);
}

}  // namespace realizar
