// Scalar dequantization, one function per type. Each computes exactly the float32 expression of
// the GGUF definition in the same order as ggml and gguf-py, so results are bit-identical.
// Fused multiply-add would round once instead of twice and change results: keep it off here.
#pragma GCC optimize("fp-contract=off")

#include <cstring>

#include "realizar/error.h"
#include "quant/row_length.h"
#include "realizar/quant.h"

namespace realizar {

void dequantize_row_q4_0(const block_q4_0* src, float* dst, int64_t n) {
  for (int64_t b = 0; b < n / QK4_0; ++b, dst += QK4_0) {
    const float d = fp16_to_fp32(src[b].d);
    for (int j = 0; j < QK4_0 / 2; ++j) {
      dst[j] = d * static_cast<float>((src[b].qs[j] & 0xF) - 8);
      dst[j + QK4_0 / 2] = d * static_cast<float>((src[b].qs[j] >> 4) - 8);
    }
  }
}

void dequantize_row_q4_1(const block_q4_1* src, float* dst, int64_t n) {
  for (int64_t b = 0; b < n / QK4_1; ++b, dst += QK4_1) {
    const float d = fp16_to_fp32(src[b].d);
    const float m = fp16_to_fp32(src[b].m);
    for (int j = 0; j < QK4_1 / 2; ++j) {
      dst[j] = d * static_cast<float>(src[b].qs[j] & 0xF) + m;
      dst[j + QK4_1 / 2] = d * static_cast<float>(src[b].qs[j] >> 4) + m;
    }
  }
}

// Bit j of the little-endian 32-bit qh, shifted to bit 4 (the fifth bit of a Q5 value).
static inline int q5_high_bit(uint32_t qh, int j) { return static_cast<int>((qh >> j) & 1) << 4; }

void dequantize_row_q5_0(const block_q5_0* src, float* dst, int64_t n) {
  for (int64_t b = 0; b < n / QK5_0; ++b, dst += QK5_0) {
    const float d = fp16_to_fp32(src[b].d);
    uint32_t qh;
    std::memcpy(&qh, src[b].qh, sizeof qh);
    for (int j = 0; j < QK5_0 / 2; ++j) {
      const int q0 = (src[b].qs[j] & 0xF) | q5_high_bit(qh, j);
      const int q1 = (src[b].qs[j] >> 4) | q5_high_bit(qh, j + QK5_0 / 2);
      dst[j] = d * static_cast<float>(q0 - 16);
      dst[j + QK5_0 / 2] = d * static_cast<float>(q1 - 16);
    }
  }
}

void dequantize_row_q5_1(const block_q5_1* src, float* dst, int64_t n) {
  for (int64_t b = 0; b < n / QK5_1; ++b, dst += QK5_1) {
    const float d = fp16_to_fp32(src[b].d);
    const float m = fp16_to_fp32(src[b].m);
    uint32_t qh;
    std::memcpy(&qh, src[b].qh, sizeof qh);
    for (int j = 0; j < QK5_1 / 2; ++j) {
      const int q0 = (src[b].qs[j] & 0xF) | q5_high_bit(qh, j);
      const int q1 = (src[b].qs[j] >> 4) | q5_high_bit(qh, j + QK5_1 / 2);
      dst[j] = d * static_cast<float>(q0) + m;
      dst[j + QK5_1 / 2] = d * static_cast<float>(q1) + m;
    }
  }
}

void dequantize_row_q8_0(const block_q8_0* src, float* dst, int64_t n) {
  for (int64_t b = 0; b < n / QK8_0; ++b, dst += QK8_0) {
    const float d = fp16_to_fp32(src[b].d);
    for (int j = 0; j < QK8_0; ++j) dst[j] = d * static_cast<float>(src[b].qs[j]);
  }
}

void dequantize_row_q2_K(const block_q2_K* src, float* dst, int64_t n) {
  for (int64_t b = 0; b < n / QK_K; ++b, dst += QK_K) {
    const block_q2_K& block = src[b];
    const float d = fp16_to_fp32(block.d);
    const float dmin = fp16_to_fp32(block.dmin);
    for (int e = 0; e < QK_K; ++e) {
      const int half = e / 128, shift = (e % 128) / 32, lane = e % 32;
      const int q = (block.qs[32 * half + lane] >> (2 * shift)) & 3;
      const uint8_t sc = block.scales[e / 16];
      const float dl = d * static_cast<float>(sc & 0xF);
      const float ml = dmin * static_cast<float>(sc >> 4);
      dst[e] = dl * static_cast<float>(q) - ml;
    }
  }
}

// Scale k (0..15) of a Q3_K block: 6 bits, low 4 in a nibble of bytes 0-7, high 2 in bytes 8-11.
static inline int q3_K_scale(const uint8_t* scales, int k) {
  const int low = (scales[k % 8] >> (4 * (k / 8))) & 0xF;
  const int high = (scales[8 + k % 4] >> (2 * (k / 4))) & 3;
  return (low | (high << 4)) - 32;
}

void dequantize_row_q3_K(const block_q3_K* src, float* dst, int64_t n) {
  for (int64_t b = 0; b < n / QK_K; ++b, dst += QK_K) {
    const block_q3_K& block = src[b];
    const float d = fp16_to_fp32(block.d);
    for (int e = 0; e < QK_K; ++e) {
      const int half = e / 128, shift = (e % 128) / 32, lane = e % 32;
      const int low = (block.qs[32 * half + lane] >> (2 * shift)) & 3;
      const bool high = (block.hmask[lane] >> (e / 32)) & 1;
      const float dl = d * static_cast<float>(q3_K_scale(block.scales, e / 16));
      dst[e] = dl * static_cast<float>(low - (high ? 0 : 4));
    }
  }
}

void dequantize_row_q4_K(const block_q4_K* src, float* dst, int64_t n) {
  for (int64_t b = 0; b < n / QK_K; ++b) {
    const block_q4_K& block = src[b];
    const float d = fp16_to_fp32(block.d);
    const float dmin = fp16_to_fp32(block.dmin);
    for (int sub = 0; sub < QK_K / 32; ++sub, dst += 32) {
      uint8_t sc, m;
      unpack_scale_min_k4(sub, block.scales, &sc, &m);
      const float dl = d * static_cast<float>(sc);
      const float ml = dmin * static_cast<float>(m);
      const uint8_t* qs = block.qs + 32 * (sub / 2);
      const int shift = 4 * (sub % 2);
      for (int j = 0; j < 32; ++j) dst[j] = dl * static_cast<float>((qs[j] >> shift) & 0xF) - ml;
    }
  }
}

void dequantize_row_q5_K(const block_q5_K* src, float* dst, int64_t n) {
  for (int64_t b = 0; b < n / QK_K; ++b) {
    const block_q5_K& block = src[b];
    const float d = fp16_to_fp32(block.d);
    const float dmin = fp16_to_fp32(block.dmin);
    for (int sub = 0; sub < QK_K / 32; ++sub, dst += 32) {
      uint8_t sc, m;
      unpack_scale_min_k4(sub, block.scales, &sc, &m);
      const float dl = d * static_cast<float>(sc);
      const float ml = dmin * static_cast<float>(m);
      const uint8_t* qs = block.qs + 32 * (sub / 2);
      const int shift = 4 * (sub % 2);
      for (int j = 0; j < 32; ++j) {
        const int q = ((qs[j] >> shift) & 0xF) | (((block.qh[j] >> sub) & 1) << 4);
        dst[j] = dl * static_cast<float>(q) - ml;
      }
    }
  }
}

void dequantize_row_q6_K(const block_q6_K* src, float* dst, int64_t n) {
  for (int64_t b = 0; b < n / QK_K; ++b, dst += QK_K) {
    const block_q6_K& block = src[b];
    const float d = fp16_to_fp32(block.d);
    for (int e = 0; e < QK_K; ++e) {
      const int half = e / 128, r = e % 128;
      const int low = (block.ql[64 * half + r % 64] >> (4 * (r / 64))) & 0xF;
      const int high = (block.qh[32 * half + r % 32] >> (2 * (r / 32))) & 3;
      const float dl = d * static_cast<float>(block.scales[e / 16]);
      dst[e] = dl * static_cast<float>((low | (high << 4)) - 32);
    }
  }
}

void dequantize_row_q8_K(const block_q8_K* src, float* dst, int64_t n) {
  for (int64_t b = 0; b < n / QK_K; ++b, dst += QK_K) {
    for (int j = 0; j < QK_K; ++j) dst[j] = src[b].d * static_cast<float>(src[b].qs[j]);
  }
}

namespace {

// Scalar on purpose: F16C's vcvtph2ps sets the quiet bit of signalling NaNs, fp16_to_fp32 keeps
// every bit (as numpy does).
void dequantize_row_f16(const ggml_half* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_fp32(src[i]);
}

void dequantize_row_bf16(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_fp32(src[i]);
}

// The error for a type dequantize_row has no code for (throws realizar::Error).
[[noreturn]] void refuse_to_dequantize(TensorType type) {
  fail("dequantization of tensor type {} is not supported", tensor_type_info(type).name);
}

}  // namespace

bool can_dequantize(TensorType type) {
  switch (type) {
    case TensorType::F32: case TensorType::F16: case TensorType::BF16:
    case TensorType::Q4_0: case TensorType::Q4_1: case TensorType::Q5_0: case TensorType::Q5_1:
    case TensorType::Q8_0: case TensorType::Q2_K: case TensorType::Q3_K: case TensorType::Q4_K:
    case TensorType::Q5_K: case TensorType::Q6_K: case TensorType::Q8_K:
      return true;
    default:
      return false;
  }
}

void dequantize_row(TensorType type, const void* src, float* dst, int64_t n) {
  if (!can_dequantize(type)) refuse_to_dequantize(type);
  check_row_length(type, n, "dequantize");
  switch (type) {
    case TensorType::F32: std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float)); break;
    case TensorType::F16: dequantize_row_f16(static_cast<const ggml_half*>(src), dst, n); break;
    case TensorType::BF16: dequantize_row_bf16(static_cast<const uint16_t*>(src), dst, n); break;
    case TensorType::Q4_0: dequantize_row_q4_0(static_cast<const block_q4_0*>(src), dst, n); break;
    case TensorType::Q4_1: dequantize_row_q4_1(static_cast<const block_q4_1*>(src), dst, n); break;
    case TensorType::Q5_0: dequantize_row_q5_0(static_cast<const block_q5_0*>(src), dst, n); break;
    case TensorType::Q5_1: dequantize_row_q5_1(static_cast<const block_q5_1*>(src), dst, n); break;
    case TensorType::Q8_0: dequantize_row_q8_0(static_cast<const block_q8_0*>(src), dst, n); break;
    case TensorType::Q2_K: dequantize_row_q2_K(static_cast<const block_q2_K*>(src), dst, n); break;
    case TensorType::Q3_K: dequantize_row_q3_K(static_cast<const block_q3_K*>(src), dst, n); break;
    case TensorType::Q4_K: dequantize_row_q4_K(static_cast<const block_q4_K*>(src), dst, n); break;
    case TensorType::Q5_K: dequantize_row_q5_K(static_cast<const block_q5_K*>(src), dst, n); break;
    case TensorType::Q6_K: dequantize_row_q6_K(static_cast<const block_q6_K*>(src), dst, n); break;
    case TensorType::Q8_K: dequantize_row_q8_K(static_cast<const block_q8_K*>(src), dst, n); break;
    default: refuse_to_dequantize(type);  // can_dequantize and this switch disagree
  }
}

}  // namespace realizar
