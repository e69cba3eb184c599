// Scalar quantization, one function per type.
// Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 follow ggml's reference quantizers (quantize_row_*_ref) operation
// for operation, so they match ggml and gguf-py bit for bit; fused multiply-add would change the
// rounding, so it stays off. The K-quants fit each sub-block's scale (and min) with the searches
// in scale_search.h, then quantize those scales against one fp16 super-block scale and re-round
// every value with the scale actually stored.
#pragma GCC optimize("fp-contract=off")

#include <algorithm>
#include <cmath>
#include <cstring>

#include "quant/row_length.h"
#include "quant/scale_search.h"
#include "realizar/error.h"
#include "realizar/quant.h"

#if defined(__F16C__)
#include <immintrin.h>
#endif

namespace realizar {
namespace {

// The value of largest magnitude (the first one on ties), with its sign.
float signed_absmax(const float* x, int n) {
  float amax = 0, max = 0;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  }
  return max;
}

float inverse_or_zero(float d) { return d != 0 ? 1.0f / d : 0.0f; }

// Truncation toward zero as C's float -> int8_t cast does in ggml's reference quantizers.
int truncate_clamped(float v, int nmax) { return std::clamp(static_cast<int>(v), 0, nmax); }

int round_clamped(float v, int lo, int hi) {
  return std::clamp(static_cast<int>(std::nearbyint(v)), lo, hi);
}

// Stores 32 values of 5 bits: low nibbles as Q4_0, bit 4 of element j as bit j of qh.
void pack_q5(const int* q, uint8_t* qs, uint8_t* qh_bytes) {
  uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    qs[j] = static_cast<uint8_t>((q[j] & 0xF) | ((q[j + 16] & 0xF) << 4));
    qh |= static_cast<uint32_t>(q[j] >> 4) << j;
    qh |= static_cast<uint32_t>(q[j + 16] >> 4) << (j + 16);
  }
  std::memcpy(qh_bytes, &qh, sizeof qh);
}

}  // namespace

// d = max / -8 (max: signed value of largest magnitude), q = min(15, trunc(x / d + 8.5))
void quantize_row_q4_0(const float* src, block_q4_0* dst, int64_t n) {
  for (int64_t b = 0; b < n / QK4_0; ++b, src += QK4_0) {
    const float d = signed_absmax(src, QK4_0) / -8;
    const float id = inverse_or_zero(d);
    dst[b].d = fp32_to_fp16(d);
    for (int j = 0; j < QK4_0 / 2; ++j) {
      const int q0 = truncate_clamped(src[j] * id + 8.5f, 15);
      const int q1 = truncate_clamped(src[j + QK4_0 / 2] * id + 8.5f, 15);
      dst[b].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

// d = (max - min) / 15, m = min, q = min(15, trunc((x - min) / d + 0.5))
void quantize_row_q4_1(const float* src, block_q4_1* dst, int64_t n) {
  for (int64_t b = 0; b < n / QK4_1; ++b, src += QK4_1) {
    const auto [min, max] = std::minmax_element(src, src + QK4_1);
    const float lo = *min;
    const float d = (*max - lo) / 15;
    const float id = inverse_or_zero(d);
    dst[b].d = fp32_to_fp16(d);
    dst[b].m = fp32_to_fp16(lo);
    for (int j = 0; j < QK4_1 / 2; ++j) {
      const int q0 = truncate_clamped((src[j] - lo) * id + 0.5f, 15);
      const int q1 = truncate_clamped((src[j + QK4_1 / 2] - lo) * id + 0.5f, 15);
      dst[b].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

// d = max / -16, q = min(31, trunc(x / d + 16.5))
void quantize_row_q5_0(const float* src, block_q5_0* dst, int64_t n) {
  for (int64_t b = 0; b < n / QK5_0; ++b, src += QK5_0) {
    const float d = signed_absmax(src, QK5_0) / -16;
    const float id = inverse_or_zero(d);
    int q[QK5_0];
    for (int j = 0; j < QK5_0; ++j) q[j] = truncate_clamped(src[j] * id + 16.5f, 31);
    dst[b].d = fp32_to_fp16(d);
    pack_q5(q, dst[b].qs, dst[b].qh);
  }
}

// d = (max - min) / 31, m = min, q = min(31, trunc((x - min) / d + 0.5))
void quantize_row_q5_1(const float* src, block_q5_1* dst, int64_t n) {
  for (int64_t b = 0; b < n / QK5_1; ++b, src += QK5_1) {
    const auto [min, max] = std::minmax_element(src, src + QK5_1);
    const float lo = *min;
    const float d = (*max - lo) / 31;
    const float id = inverse_or_zero(d);
    int q[QK5_1];
    for (int j = 0; j < QK5_1; ++j) q[j] = truncate_clamped((src[j] - lo) * id + 0.5f, 31);
    dst[b].d = fp32_to_fp16(d);
    dst[b].m = fp32_to_fp16(lo);
    pack_q5(q, dst[b].qs, dst[b].qh);
  }
}

// d = absmax / 127, q = round(x / d) with halves away from zero (C roundf)
void quantize_row_q8_0(const float* src, block_q8_0* dst, int64_t n) {
  for (int64_t b = 0; b < n / QK8_0; ++b, src += QK8_0) {
    float amax = 0;
    for (int j = 0; j < QK8_0; ++j) amax = std::max(amax, std::fabs(src[j]));
    const float d = amax / 127;
    const float id = inverse_or_zero(d);
    dst[b].d = fp32_to_fp16(d);
    for (int j = 0; j < QK8_0; ++j) dst[b].qs[j] = static_cast<int8_t>(std::round(src[j] * id));
  }
}

namespace {

// Packs the 6-bit scale `sc` and min `m` of sub-block j into the 12 bytes of a Q4_K/Q5_K block;
// the inverse of unpack_scale_min_k4. `scales` must start zeroed.
void pack_scale_min_k4(int j, int sc, int m, uint8_t* scales) {
  if (j < 4) {
    scales[j] |= static_cast<uint8_t>(sc);
    scales[j + 4] |= static_cast<uint8_t>(m);
  } else {
    scales[j + 4] = static_cast<uint8_t>((sc & 0xF) | ((m & 0xF) << 4));
    scales[j - 4] |= static_cast<uint8_t>((sc >> 4) << 6);
    scales[j] |= static_cast<uint8_t>((m >> 4) << 6);
  }
}

// Shared by Q4_K (nmax 15) and Q5_K (nmax 31): fits 8 sub-blocks of 32, stores d, dmin and the
// packed 6-bit scales and mins, and writes each element's integer (0..nmax) to q.
template <int nmax, scale_search::Grid grid>
void quantize_super_block_k4(const float* x, ggml_half* d_out,
                             ggml_half* dmin_out, uint8_t* scales, int* q) {
  // Weights favour large magnitudes a little (as ggml's reference): w = rms(x) + |x|.
  float sum_x2 = 0;
  for (int i = 0; i < QK_K; ++i) sum_x2 += x[i] * x[i];
  const float rms = std::sqrt(sum_x2 / QK_K);
  float w[QK_K];
  for (int i = 0; i < QK_K; ++i) w[i] = rms + std::fabs(x[i]);

  scale_search::ScaleMin fits[QK_K / 32];
  float max_scale = 0, max_min = 0;
  for (int s = 0; s < QK_K / 32; ++s) {
    fits[s] = scale_search::fit_scale_min<32, grid>(x + 32 * s, w + 32 * s, nmax);
    max_scale = std::max(max_scale, fits[s].scale);
    max_min = std::max(max_min, -fits[s].min);
  }
  const float inv_scale = max_scale > 0 ? 63 / max_scale : 0.0f;
  const float inv_min = max_min > 0 ? 63 / max_min : 0.0f;
  *d_out = fp32_to_fp16(max_scale / 63);
  *dmin_out = fp32_to_fp16(max_min / 63);
  const float d = fp16_to_fp32(*d_out), dmin = fp16_to_fp32(*dmin_out);

  std::memset(scales, 0, K_SCALE_SIZE);
  for (int s = 0; s < QK_K / 32; ++s) {
    const int sc = round_clamped(inv_scale * fits[s].scale, 0, 63);
    const int m = round_clamped(inv_min * -fits[s].min, 0, 63);
    pack_scale_min_k4(s, sc, m, scales);
    // Re-round against the scale and min as stored, so rounding of d, dmin, sc, m is absorbed.
    const float dl = d * static_cast<float>(sc), ml = dmin * static_cast<float>(m);
    const float idl = inverse_or_zero(dl);
    for (int j = 0; j < 32; ++j) {
      q[32 * s + j] = dl != 0 ? round_clamped((x[32 * s + j] + ml) * idl, 0, nmax) : 0;
    }
  }
}

// Candidate grids: 21 inverse scales over [nmax - 1, nmax + 1] for Q4_K and 16 over
// [nmax - 0.5, nmax + 1] for Q5_K (the ranges ggml's reference searches).
constexpr scale_search::Grid kGridQ4_K{-1.0f, 0.1f, 21};
constexpr scale_search::Grid kGridQ5_K{-0.5f, 0.1f, 16};
// 19 inverse scales over [nmax - 0.9, nmax + 0.9] for Q6_K.
constexpr scale_search::Grid kGridQ6_K{-0.9f, 0.1f, 19};

}  // namespace

// x = d*sc*q - dmin*m: per 32 values a least-squares (sc, m) search, then 6-bit sc, m against d, dmin
void quantize_row_q4_K(const float* src, block_q4_K* dst, int64_t n) {
  int q[QK_K];
  for (int64_t b = 0; b < n / QK_K; ++b, src += QK_K) {
    quantize_super_block_k4<15, kGridQ4_K>(src, &dst[b].d, &dst[b].dmin, dst[b].scales, q);
    for (int c = 0; c < QK_K / 64; ++c) {
      for (int j = 0; j < 32; ++j) {
        dst[b].qs[32 * c + j] = static_cast<uint8_t>(q[64 * c + j] | (q[64 * c + 32 + j] << 4));
      }
    }
  }
}

// as Q4_K with 5-bit q: bit 4 of element 32*s + j goes to bit s of qh[j]
void quantize_row_q5_K(const float* src, block_q5_K* dst, int64_t n) {
  int q[QK_K];
  for (int64_t b = 0; b < n / QK_K; ++b, src += QK_K) {
    quantize_super_block_k4<31, kGridQ5_K>(src, &dst[b].d, &dst[b].dmin, dst[b].scales, q);
    std::memset(dst[b].qh, 0, sizeof dst[b].qh);
    for (int c = 0; c < QK_K / 64; ++c) {
      for (int j = 0; j < 32; ++j) {
        const int lo = q[64 * c + j], hi = q[64 * c + 32 + j];
        dst[b].qs[32 * c + j] = static_cast<uint8_t>((lo & 0xF) | ((hi & 0xF) << 4));
        dst[b].qh[j] |= static_cast<uint8_t>(((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1)));
      }
    }
  }
}

// x = d*sc*(q - 32): per 16 values a least-squares scale search, then int8 sc against fp16 d
void quantize_row_q6_K(const float* src, block_q6_K* dst, int64_t n) {
  for (int64_t b = 0; b < n / QK_K; ++b, src += QK_K) {
    block_q6_K& block = dst[b];
    float w[QK_K];  // weights x^2: the largest values decide the scale
    for (int i = 0; i < QK_K; ++i) w[i] = src[i] * src[i];
    float scales[QK_K / 16];
    for (int s = 0; s < QK_K / 16; ++s) {
      scales[s] = scale_search::fit_scale_symmetric<16, kGridQ6_K>(src + 16 * s, w + 16 * s, 32);
    }
    const float max_scale = signed_absmax(scales, QK_K / 16);
    const float iscale = max_scale != 0 ? -128 / max_scale : 0.0f;
    block.d = fp32_to_fp16(inverse_or_zero(iscale));
    const float d = fp16_to_fp32(block.d);

    std::memset(block.qh, 0, sizeof block.qh);
    std::memset(block.ql, 0, sizeof block.ql);
    for (int s = 0; s < QK_K / 16; ++s) {
      block.scales[s] = static_cast<int8_t>(round_clamped(iscale * scales[s], -128, 127));
      const float dl = d * static_cast<float>(block.scales[s]);
      const float idl = inverse_or_zero(dl);
      for (int j = 0; j < 16; ++j) {
        const int e = 16 * s + j, half = e / 128, r = e % 128;
        const int q = dl != 0 ? round_clamped(src[e] * idl, -32, 31) + 32 : 32;
        block.ql[64 * half + r % 64] |= static_cast<uint8_t>((q & 0xF) << (4 * (r / 64)));
        block.qh[32 * half + r % 32] |= static_cast<uint8_t>((q >> 4) << (2 * (r / 32)));
      }
    }
  }
}

// d = max / -127 (max: signed value of largest magnitude), q = round(x / d); bsums per 16 values
void quantize_row_q8_K(const float* src, block_q8_K* dst, int64_t n) {
  for (int64_t b = 0; b < n / QK_K; ++b, src += QK_K) {
    block_q8_K& block = dst[b];
    const float max = signed_absmax(src, QK_K);
    const float iscale = max != 0 ? -127 / max : 0.0f;
    block.d = inverse_or_zero(iscale);
    for (int j = 0; j < QK_K; ++j) block.qs[j] = static_cast<int8_t>(round_clamped(iscale * src[j], -128, 127));
    for (int s = 0; s < QK_K / 16; ++s) {
      int sum = 0;
      for (int j = 0; j < 16; ++j) sum += block.qs[16 * s + j];
      block.bsums[s] = static_cast<int16_t>(sum);
    }
  }
}

namespace {

void quantize_row_f16(const float* src, ggml_half* dst, int64_t n) {
  int64_t i = 0;
#if defined(__F16C__)
  for (; i + 8 <= n; i += 8) {  // vcvtps2ph rounds to nearest even, like fp32_to_fp16
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), h);
  }
#endif
  for (; i < n; ++i) dst[i] = fp32_to_fp16(src[i]);
}

void quantize_row_bf16(const float* src, uint16_t* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = fp32_to_bf16(src[i]);
}

// The error for a type quantize_row has no code for (throws realizar::Error).
[[noreturn]] void refuse_to_quantize(TensorType type) {
  fail("quantization to tensor type {} is not supported", tensor_type_info(type).name);
}

}  // namespace

bool can_quantize(TensorType type) {
  switch (type) {
    case TensorType::F32: case TensorType::F16: case TensorType::BF16:
    case TensorType::Q4_0: case TensorType::Q4_1: case TensorType::Q5_0: case TensorType::Q5_1:
    case TensorType::Q8_0: case TensorType::Q4_K: case TensorType::Q5_K: case TensorType::Q6_K:
    case TensorType::Q8_K:
      return true;
    default:
      return false;
  }
}

void quantize_row(TensorType type, const float* src, void* dst, int64_t n) {
  if (!can_quantize(type)) refuse_to_quantize(type);
  check_row_length(type, n, "quantize");
  switch (type) {
    case TensorType::F32: std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float)); break;
    case TensorType::F16: quantize_row_f16(src, static_cast<ggml_half*>(dst), n); break;
    case TensorType::BF16: quantize_row_bf16(src, static_cast<uint16_t*>(dst), n); break;
    case TensorType::Q4_0: quantize_row_q4_0(src, static_cast<block_q4_0*>(dst), n); break;
    case TensorType::Q4_1: quantize_row_q4_1(src, static_cast<block_q4_1*>(dst), n); break;
    case TensorType::Q5_0: quantize_row_q5_0(src, static_cast<block_q5_0*>(dst), n); break;
    case TensorType::Q5_1: quantize_row_q5_1(src, static_cast<block_q5_1*>(dst), n); break;
    case TensorType::Q8_0: quantize_row_q8_0(src, static_cast<block_q8_0*>(dst), n); break;
    case TensorType::Q4_K: quantize_row_q4_K(src, static_cast<block_q4_K*>(dst), n); break;
    case TensorType::Q5_K: quantize_row_q5_K(src, static_cast<block_q5_K*>(dst), n); break;
    case TensorType::Q6_K: quantize_row_q6_K(src, static_cast<block_q6_K*>(dst), n); break;
    case TensorType::Q8_K: quantize_row_q8_K(src, static_cast<block_q8_K*>(dst), n); break;
    default: refuse_to_quantize(type);  // can_quantize and this switch disagree
  }
}

}  // namespace realizar
