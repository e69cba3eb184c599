#include "backend/cpu/kernels.h"

#include <cmath>
#include <cstring>

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define REALIZAR_CPU_AVX2 1
#endif

#include "realizar/error.h"
#include "realizar/quant.h"
#include "realizar/quant_blocks.h"

namespace realizar::cpu {
namespace {

// ---- scalar kernels: the portable definition of every fused dot product ----------------------

// Bit 4 of element j of a Q5_0/Q5_1 block.
int q5_high_bit(const uint8_t qh[4], int j) {
  uint32_t bits;
  std::memcpy(&bits, qh, 4);
  return static_cast<int>((bits >> j) & 1u) << 4;
}

float dot_q8_0_scalar(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_q8_0*>(w);
  const auto* y = static_cast<const block_q8_0*>(a);
  float sum = 0.0f;
  for (int64_t b = 0; b < n / QK8_0; ++b) {
    int32_t s = 0;
    for (int j = 0; j < QK8_0; ++j) s += x[b].qs[j] * y[b].qs[j];
    sum += fp16_to_fp32(x[b].d) * fp16_to_fp32(y[b].d) * static_cast<float>(s);
  }
  return sum;
}

// Shared by Q4_0/Q4_1/Q5_0/Q5_1: q = low nibble | high bit, x = d * (q - offset) + m.
template <typename Block, bool kHighBit, bool kHasMin, int kOffset>
float dot_q4_q5_scalar(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const Block*>(w);
  const auto* y = static_cast<const block_q8_0*>(a);
  float sum = 0.0f;
  for (int64_t b = 0; b < n / QK8_0; ++b) {
    int32_t sum_qy = 0, sum_y = 0;
    // Element j in the low nibble of qs[j], element j + 16 in its high nibble.
    for (int j = 0; j < QK8_0 / 2; ++j) {
      int lo = x[b].qs[j] & 0xF, hi = x[b].qs[j] >> 4;
      if constexpr (kHighBit) {
        lo |= q5_high_bit(x[b].qh, j);
        hi |= q5_high_bit(x[b].qh, j + 16);
      }
      sum_qy += (lo - kOffset) * y[b].qs[j] + (hi - kOffset) * y[b].qs[j + 16];
      sum_y += y[b].qs[j] + y[b].qs[j + 16];
    }
    const float dy = fp16_to_fp32(y[b].d);
    sum += fp16_to_fp32(x[b].d) * dy * static_cast<float>(sum_qy);
    if constexpr (kHasMin) sum += fp16_to_fp32(x[b].m) * dy * static_cast<float>(sum_y);
  }
  return sum;
}

// Q4_K/Q5_K: x = d * sc * q - dmin * m per sub-block of 32; the min term uses the Q8_K bsums.
template <typename Block, bool kHighBit>
float dot_q4_q5_K_scalar(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const Block*>(w);
  const auto* y = static_cast<const block_q8_K*>(a);
  float sum = 0.0f;
  for (int64_t b = 0; b < n / QK_K; ++b) {
    int32_t sum_scaled = 0, sum_mins = 0;
    for (int s = 0; s < 8; ++s) {
      uint8_t sc, m;
      unpack_scale_min_k4(s, x[b].scales, &sc, &m);
      sum_mins += m * (y[b].bsums[2 * s] + y[b].bsums[2 * s + 1]);
      const uint8_t* qs = x[b].qs + 32 * (s / 2);
      int32_t dot = 0;
      for (int j = 0; j < 32; ++j) {
        int q = (s % 2 == 0) ? (qs[j] & 0xF) : (qs[j] >> 4);
        if constexpr (kHighBit) q |= ((x[b].qh[j] >> s) & 1) << 4;
        dot += q * y[b].qs[32 * s + j];
      }
      sum_scaled += sc * dot;
    }
    sum += y[b].d * (fp16_to_fp32(x[b].d) * static_cast<float>(sum_scaled) -
                     fp16_to_fp32(x[b].dmin) * static_cast<float>(sum_mins));
  }
  return sum;
}

float dot_q6_K_scalar(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_q6_K*>(w);
  const auto* y = static_cast<const block_q8_K*>(a);
  float sum = 0.0f;
  for (int64_t b = 0; b < n / QK_K; ++b) {
    int32_t total = 0;
    for (int e = 0; e < QK_K; e += 16) {
      int32_t dot = 0;
      for (int k = e; k < e + 16; ++k) {
        const int h = k / 128, r = k % 128;
        const uint8_t l = x[b].ql[64 * h + r % 64];
        const int low = (r < 64) ? (l & 0xF) : (l >> 4);
        const int high = (x[b].qh[32 * h + r % 32] >> (2 * (r / 32))) & 3;
        dot += ((low | (high << 4)) - 32) * y[b].qs[k];
      }
      total += x[b].scales[e / 16] * dot;
    }
    sum += y[b].d * fp16_to_fp32(x[b].d) * static_cast<float>(total);
  }
  return sum;
}

float dot_f32_scalar(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const float*>(w);
  const auto* y = static_cast<const float*>(a);
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) sum += x[i] * y[i];
  return sum;
}

float dot_f16_scalar(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const ggml_half*>(w);
  const auto* y = static_cast<const float*>(a);
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) sum += fp16_to_fp32(x[i]) * y[i];
  return sum;
}

float dot_bf16_scalar(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const uint16_t*>(w);
  const auto* y = static_cast<const float*>(a);
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) sum += bf16_to_fp32(x[i]) * y[i];
  return sum;
}

// Types without a fused kernel: dequantize 256 elements at a time onto the stack.
template <TensorType kType>
float dot_dequantized(const void* w, const void* a, int64_t n) {
  constexpr int64_t kChunk = 256;
  const TensorTypeInfo info = tensor_type_info(kType);
  const auto* src = static_cast<const uint8_t*>(w);
  const auto* y = static_cast<const float*>(a);
  float row[kChunk];
  float sum = 0.0f;
  for (int64_t start = 0; start < n; start += kChunk) {
    const int64_t count = std::min(kChunk, n - start);
    dequantize_row(kType, src + start / info.block_size * info.block_bytes, row, count);
    sum += dot_f32(row, y + start, count);
  }
  return sum;
}

#ifdef REALIZAR_CPU_AVX2
// ---- AVX2 / AVX-512 VNNI kernels --------------------------------------------------------------

float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// int32 lane i += sum of u[4i..4i+3] * s[4i..4i+3], u unsigned and s signed bytes. Without VNNI
// the int16 pair sums of maddubs cannot saturate here: |u| <= 127 and |s| <= 127 everywhere.
__m256i dot_u8s8(__m256i acc, __m256i u, __m256i s) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  return _mm256_dpbusd_epi32(acc, u, s);
#else
  return _mm256_add_epi32(acc,
                          _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
#endif
}

// Signed x signed bytes via |x| * (y with x's sign).
__m256i dot_s8s8(__m256i x, __m256i y) {
  return dot_u8s8(_mm256_setzero_si256(), _mm256_abs_epi8(x), _mm256_sign_epi8(y, x));
}

// The 32 4-bit values of a Q4_0-style block: element j < 16 in the low nibble of qs[j].
__m256i unpack_nibbles_32(const uint8_t* qs) {
  const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m256i both = _mm256_set_m128i(_mm_srli_epi16(bytes, 4), bytes);
  return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

// 0x10 in byte j where bit j of the 32-bit little-endian qh is set, else 0.
__m256i expand_high_bits(const uint8_t qh[4]) {
  uint32_t bits;
  std::memcpy(&bits, qh, 4);
  const __m256i shuffle = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,  //
                                           2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
  const __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)), shuffle);
  const __m256i mask = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ULL));
  const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(bytes, mask), mask);
  return _mm256_and_si256(set, _mm256_set1_epi8(0x10));
}

__m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

float dot_q8_0_avx2(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_q8_0*>(w);
  const auto* y = static_cast<const block_q8_0*>(a);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < n / QK8_0; ++b) {
    const __m256i p = dot_s8s8(load256(x[b].qs), load256(y[b].qs));
    const float d = fp16_to_fp32(x[b].d) * fp16_to_fp32(y[b].d);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(p), acc);
  }
  return hsum(acc);
}

template <typename Block, bool kHighBit, bool kHasMin, int kOffset>
float dot_q4_q5_avx2(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const Block*>(w);
  const auto* y = static_cast<const block_q8_0*>(a);
  const __m256i ones = _mm256_set1_epi8(1);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < n / QK8_0; ++b) {
    __m256i q = unpack_nibbles_32(x[b].qs);
    if constexpr (kHighBit) q = _mm256_or_si256(q, expand_high_bits(x[b].qh));
    const __m256i yq = load256(y[b].qs);
    const float dy = fp16_to_fp32(y[b].d);
    if constexpr (kHasMin) {
      const __m256i p = dot_u8s8(_mm256_setzero_si256(), q, yq);
      const __m256i sum_y = dot_u8s8(_mm256_setzero_si256(), ones, yq);
      acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16_to_fp32(x[b].d) * dy), _mm256_cvtepi32_ps(p), acc);
      acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16_to_fp32(x[b].m) * dy), _mm256_cvtepi32_ps(sum_y),
                            acc);
    } else {
      const __m256i p = dot_s8s8(_mm256_sub_epi8(q, _mm256_set1_epi8(kOffset)), yq);
      acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16_to_fp32(x[b].d) * dy), _mm256_cvtepi32_ps(p), acc);
    }
  }
  return hsum(acc);
}

// Sum over the 8 sub-blocks of m[s] * (bsums[2s] + bsums[2s+1]).
int32_t k_quant_min_sum(const uint8_t* mins, const int16_t* bsums) {
  int32_t sum = 0;
  for (int s = 0; s < 8; ++s) sum += mins[s] * (bsums[2 * s] + bsums[2 * s + 1]);
  return sum;
}

template <typename Block, bool kHighBit>
float dot_q4_q5_K_avx2(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const Block*>(w);
  const auto* y = static_cast<const block_q8_K*>(a);
  const __m256i low_mask = _mm256_set1_epi8(0x0F);
  __m256 acc = _mm256_setzero_ps();
  float mins_total = 0.0f;
  for (int64_t b = 0; b < n / QK_K; ++b) {
    uint8_t sc[8], m[8];
    for (int s = 0; s < 8; ++s) unpack_scale_min_k4(s, x[b].scales, &sc[s], &m[s]);
    mins_total += y[b].d * fp16_to_fp32(x[b].dmin) * static_cast<float>(k_quant_min_sum(m, y[b].bsums));
    __m256i high;
    if constexpr (kHighBit) high = load256(x[b].qh);
    __m256i sum = _mm256_setzero_si256();
    for (int c = 0; c < 4; ++c) {
      const __m256i packed = load256(x[b].qs + 32 * c);
      __m256i lo = _mm256_and_si256(packed, low_mask);
      __m256i hi = _mm256_and_si256(_mm256_srli_epi16(packed, 4), low_mask);
      if constexpr (kHighBit) {
        const __m256i bit_lo = _mm256_set1_epi8(static_cast<char>(1 << (2 * c)));
        const __m256i bit_hi = _mm256_set1_epi8(static_cast<char>(1 << (2 * c + 1)));
        const __m256i sixteen = _mm256_set1_epi8(0x10);
        lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(high, bit_lo), bit_lo), sixteen));
        hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(high, bit_hi), bit_hi), sixteen));
      }
      const __m256i p_lo = dot_u8s8(_mm256_setzero_si256(), lo, load256(y[b].qs + 64 * c));
      const __m256i p_hi = dot_u8s8(_mm256_setzero_si256(), hi, load256(y[b].qs + 64 * c + 32));
      sum = _mm256_add_epi32(sum, _mm256_mullo_epi32(p_lo, _mm256_set1_epi32(sc[2 * c])));
      sum = _mm256_add_epi32(sum, _mm256_mullo_epi32(p_hi, _mm256_set1_epi32(sc[2 * c + 1])));
    }
    const float d = y[b].d * fp16_to_fp32(x[b].d);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sum), acc);
  }
  return hsum(acc) - mins_total;
}

float dot_q6_K_avx2(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const block_q6_K*>(w);
  const auto* y = static_cast<const block_q8_K*>(a);
  const __m256i low_mask = _mm256_set1_epi8(0x0F);
  const __m256i two_bits = _mm256_set1_epi8(0x03);
  __m256 acc = _mm256_setzero_ps();
  float offsets_total = 0.0f;
  for (int64_t b = 0; b < n / QK_K; ++b) {
    const int8_t* scales = x[b].scales;
    int32_t offset = 0;  // 32 * sum_i scales[i] * bsums[i]: the "- 32" of every value
    for (int i = 0; i < 16; ++i) offset += scales[i] * y[b].bsums[i];
    const float d = y[b].d * fp16_to_fp32(x[b].d);
    offsets_total += d * static_cast<float>(32 * offset);
    __m256i sum = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      const __m256i qh = load256(x[b].qh + 32 * h);
      const __m256i ql0 = load256(x[b].ql + 64 * h);
      const __m256i ql1 = load256(x[b].ql + 64 * h + 32);
      const __m256i lows[4] = {_mm256_and_si256(ql0, low_mask), _mm256_and_si256(ql1, low_mask),
                               _mm256_and_si256(_mm256_srli_epi16(ql0, 4), low_mask),
                               _mm256_and_si256(_mm256_srli_epi16(ql1, 4), low_mask)};
      for (int g = 0; g < 4; ++g) {
        const __m256i high = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * g), two_bits);
        const __m256i q = _mm256_or_si256(lows[g], _mm256_slli_epi16(high, 4));
        const __m256i p = dot_u8s8(_mm256_setzero_si256(), q, load256(y[b].qs + 128 * h + 32 * g));
        const int s0 = scales[8 * h + 2 * g], s1 = scales[8 * h + 2 * g + 1];
        sum = _mm256_add_epi32(sum, _mm256_mullo_epi32(p, _mm256_setr_epi32(s0, s0, s0, s0, s1, s1, s1, s1)));
      }
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sum), acc);
  }
  return hsum(acc) - offsets_total;
}

// Float weights: 16 elements per step in two accumulators, scalar tail.
template <typename Load, typename Scalar>
float dot_float_avx2(const float* y, int64_t n, Load load, Scalar scalar) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(load(i), _mm256_loadu_ps(y + i), acc0);
    acc1 = _mm256_fmadd_ps(load(i + 8), _mm256_loadu_ps(y + i + 8), acc1);
  }
  for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(load(i), _mm256_loadu_ps(y + i), acc0);
  float sum = hsum(_mm256_add_ps(acc0, acc1));
  for (; i < n; ++i) sum += scalar(i) * y[i];
  return sum;
}

float dot_f32_avx2(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const float*>(w);
  return dot_f32(x, static_cast<const float*>(a), n);
}

float dot_f16_avx2(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const ggml_half*>(w);
  return dot_float_avx2(
      static_cast<const float*>(a), n,
      [x](int64_t i) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i))); },
      [x](int64_t i) { return fp16_to_fp32(x[i]); });
}

float dot_bf16_avx2(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const uint16_t*>(w);
  return dot_float_avx2(
      static_cast<const float*>(a), n,
      [x](int64_t i) {
        const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i)));
        return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
      },
      [x](int64_t i) { return bf16_to_fp32(x[i]); });
}
#endif  // REALIZAR_CPU_AVX2

}  // namespace

TensorType activation_type(TensorType weight_type) {
  switch (weight_type) {
    case TensorType::Q4_K: case TensorType::Q5_K: case TensorType::Q6_K:
      return TensorType::Q8_K;
    case TensorType::Q4_0: case TensorType::Q4_1: case TensorType::Q5_0: case TensorType::Q5_1:
    case TensorType::Q8_0:
      return TensorType::Q8_0;
    default:
      return TensorType::F32;
  }
}

DotKernel scalar_dot_kernel(TensorType weight_type) {
  switch (weight_type) {
    case TensorType::F32: return dot_f32_scalar;
    case TensorType::F16: return dot_f16_scalar;
    case TensorType::BF16: return dot_bf16_scalar;
    case TensorType::Q8_0: return dot_q8_0_scalar;
    case TensorType::Q4_0: return dot_q4_q5_scalar<block_q4_0, false, false, 8>;
    case TensorType::Q4_1: return dot_q4_q5_scalar<block_q4_1, false, true, 0>;
    case TensorType::Q5_0: return dot_q4_q5_scalar<block_q5_0, true, false, 16>;
    case TensorType::Q5_1: return dot_q4_q5_scalar<block_q5_1, true, true, 0>;
    case TensorType::Q4_K: return dot_q4_q5_K_scalar<block_q4_K, false>;
    case TensorType::Q5_K: return dot_q4_q5_K_scalar<block_q5_K, true>;
    case TensorType::Q6_K: return dot_q6_K_scalar;
    default: return nullptr;
  }
}

DotKernel dot_kernel(TensorType weight_type) {
#ifdef REALIZAR_CPU_AVX2
  switch (weight_type) {
    case TensorType::F32: return dot_f32_avx2;
    case TensorType::F16: return dot_f16_avx2;
    case TensorType::BF16: return dot_bf16_avx2;
    case TensorType::Q8_0: return dot_q8_0_avx2;
    case TensorType::Q4_0: return dot_q4_q5_avx2<block_q4_0, false, false, 8>;
    case TensorType::Q4_1: return dot_q4_q5_avx2<block_q4_1, false, true, 0>;
    case TensorType::Q5_0: return dot_q4_q5_avx2<block_q5_0, true, false, 16>;
    case TensorType::Q5_1: return dot_q4_q5_avx2<block_q5_1, true, true, 0>;
    case TensorType::Q4_K: return dot_q4_q5_K_avx2<block_q4_K, false>;
    case TensorType::Q5_K: return dot_q4_q5_K_avx2<block_q5_K, true>;
    case TensorType::Q6_K: return dot_q6_K_avx2;
    default: break;
  }
#endif
  if (DotKernel scalar = scalar_dot_kernel(weight_type)) return scalar;
  switch (weight_type) {
    case TensorType::Q2_K: return dot_dequantized<TensorType::Q2_K>;
    case TensorType::Q3_K: return dot_dequantized<TensorType::Q3_K>;
    default: fail("the CPU backend has no kernel for weight type {}", tensor_type_name(weight_type));
  }
}

const char* kernel_isa() {
#if defined(REALIZAR_CPU_AVX2) && defined(__AVX512VNNI__) && defined(__AVX512VL__)
  return "avx512vnni";
#elif defined(REALIZAR_CPU_AVX2)
  return "avx2";
#else
  return "scalar";
#endif
}

void quantize_activation_row(TensorType type, const float* x, void* dst, int64_t n) {
  switch (type) {
    case TensorType::Q8_K: quantize_row_q8_K(x, static_cast<block_q8_K*>(dst), n); break;
    case TensorType::Q8_0: quantize_row_q8_0(x, static_cast<block_q8_0*>(dst), n); break;
    case TensorType::F32: std::memcpy(dst, x, static_cast<size_t>(n) * sizeof(float)); break;
    default: fail("{} is not an activation type", tensor_type_name(type));
  }
}

float dot_f32(const float* a, const float* b, int64_t n) {
#ifdef REALIZAR_CPU_AVX2
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
  }
  for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
  float sum = hsum(_mm256_add_ps(acc0, acc1));
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
#else
  return dot_f32_scalar(a, b, n);
#endif
}

void axpy_f32(float s, const float* x, float* y, int64_t n) {
  int64_t i = 0;
#ifdef REALIZAR_CPU_AVX2
  const __m256 vs = _mm256_set1_ps(s);
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(vs, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  }
#endif
  for (; i < n; ++i) y[i] += s * x[i];
}

}  // namespace realizar::cpu
