#include "backend/cpu/kernels.h"

#include <cmath>
#include <cstring>
#include <type_traits>

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define REALIZAR_CPU_AVX2 1
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define REALIZAR_CPU_VNNI 1  // vpdpbusd / vpdpwssd on 256-bit vectors
#endif
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

// One F16C instruction; the portable fp16_to_fp32 costs several cycles per block scale.
float half_to_float(ggml_half h) { return _cvtsh_ss(h); }

float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// int32 lane i += sum of u[4i..4i+3] * s[4i..4i+3], u unsigned and s signed bytes. Without VNNI
// the int16 pair sums of maddubs cannot saturate here: |u| <= 127 and |s| <= 127 everywhere.
__m256i dot_u8s8(__m256i acc, __m256i u, __m256i s) {
#ifdef REALIZAR_CPU_VNNI
  return _mm256_dpbusd_epi32(acc, u, s);
#else
  return _mm256_add_epi32(acc,
                          _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
#endif
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
#if defined(__AVX512BW__) && defined(__AVX512VL__)
  return _mm256_maskz_mov_epi8(bits, _mm256_set1_epi8(0x10));  // the bits are a byte mask
#else
  const __m256i shuffle = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,  //
                                           2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
  const __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)), shuffle);
  const __m256i mask = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ULL));
  const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(bytes, mask), mask);
  return _mm256_and_si256(set, _mm256_set1_epi8(0x10));
#endif
}

__m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// Q4_1/Q5_1 (x = d * q + m): d * sum(q * y) + m * sum(y), both sums from vpdpbusd.
template <typename Block, bool kHighBit>
float dot_q4_1_q5_1_avx2(const void* w, const void* a, int64_t n) {
  const auto* x = static_cast<const Block*>(w);
  const auto* y = static_cast<const block_q8_0*>(a);
  const __m256i ones = _mm256_set1_epi8(1);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < n / QK8_0; ++b) {
    __m256i q = unpack_nibbles_32(x[b].qs);
    if constexpr (kHighBit) q = _mm256_or_si256(q, expand_high_bits(x[b].qh));
    const __m256i yq = load256(y[b].qs);
    const float dy = half_to_float(y[b].d);
    const __m256i p = dot_u8s8(_mm256_setzero_si256(), q, yq);
    const __m256i sum_y = dot_u8s8(_mm256_setzero_si256(), ones, yq);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(half_to_float(x[b].d) * dy), _mm256_cvtepi32_ps(p), acc);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(half_to_float(x[b].m) * dy), _mm256_cvtepi32_ps(sum_y), acc);
  }
  return hsum(acc);
}

// The 8 scales (bytes 0-7) and 8 mins (bytes 8-15) of a Q4_K/Q5_K block, 6 bits each, unpacked
// four at a time with 32-bit operations (same layout as unpack_scale_min_k4).
void unpack_scales_mins_k4(const uint8_t packed[12], uint8_t out[16]) {
  constexpr uint32_t kLow6 = 0x3f3f3f3f, kLow4 = 0x0f0f0f0f, kLow2 = 0x03030303;
  uint32_t q[3];
  std::memcpy(q, packed, 12);
  const uint32_t words[4] = {q[0] & kLow6, (q[2] & kLow4) | (((q[0] >> 6) & kLow2) << 4), q[1] & kLow6,
                             ((q[2] >> 4) & kLow4) | (((q[1] >> 6) & kLow2) << 4)};
  std::memcpy(out, words, 16);
}

// Q4_K/Q5_K row against kTokens Q8_K rows (a + t * stride): each weight block is unpacked once
// and used for every token, which is what makes batched prefill cheaper per token than decode.
template <typename Block, bool kHighBit, int kTokens>
void dot_q4_q5_K_rows(const void* w, const void* a, size_t stride, int64_t n, float* out) {
  const auto* x = static_cast<const Block*>(w);
  const auto* act = static_cast<const uint8_t*>(a);
  const __m256i low_mask = _mm256_set1_epi8(0x0F);
  const __m256i ones16 = _mm256_set1_epi16(1);
  __m256 acc[kTokens], acc_min[kTokens];
  for (int t = 0; t < kTokens; ++t) acc[t] = acc_min[t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < n / QK_K; ++b) {
    alignas(16) uint8_t scales_mins[16];
    unpack_scales_mins_k4(x[b].scales, scales_mins);
    const __m256i mins = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(scales_mins + 8)));
    __m256i q[8];  // sub-block s: 32 values
    for (int c = 0; c < 4; ++c) {
      const __m256i packed = load256(x[b].qs + 32 * c);
      q[2 * c] = _mm256_and_si256(packed, low_mask);
      q[2 * c + 1] = _mm256_and_si256(_mm256_srli_epi16(packed, 4), low_mask);
    }
    if constexpr (kHighBit) {
      const __m256i high = load256(x[b].qh);
      const __m256i sixteen = _mm256_set1_epi8(0x10);
      for (int s = 0; s < 8; ++s) {
        const __m256i bit = _mm256_set1_epi8(static_cast<char>(1 << s));
        const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(high, bit), bit);
        q[s] = _mm256_or_si256(q[s], _mm256_and_si256(set, sixteen));
      }
    }
    const float dx = half_to_float(x[b].d), dmin = half_to_float(x[b].dmin);
#ifdef REALIZAR_CPU_VNNI
    // Sub-block sums of 4 products (|p| <= 4 * 31 * 127) fit int16: two sub-blocks are packed
    // into one vector and scaled with one vpdpwssd, against [sc[2c] x4, sc[2c+1] x4] per lane.
    const __m256i scales16 = _mm256_broadcastsi128_si256(
        _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(scales_mins))));
    __m256i pair_scales[4];
    for (int c = 0; c < 4; ++c) {
      const char lo = static_cast<char>(4 * c), hi = static_cast<char>(4 * c + 2);
      pair_scales[c] = _mm256_shuffle_epi8(
          scales16, _mm256_setr_epi8(lo, lo + 1, lo, lo + 1, lo, lo + 1, lo, lo + 1, hi, hi + 1, hi, hi + 1, hi, hi + 1, hi, hi + 1,
                                     lo, lo + 1, lo, lo + 1, lo, lo + 1, lo, lo + 1, hi, hi + 1, hi, hi + 1, hi, hi + 1, hi, hi + 1));
    }
#endif
    for (int t = 0; t < kTokens; ++t) {
      const auto& y = reinterpret_cast<const block_q8_K*>(act + t * stride)[b];
      __m256i sum = _mm256_setzero_si256();
#ifdef REALIZAR_CPU_VNNI
      for (int c = 0; c < 4; ++c) {
        const __m256i p_lo = dot_u8s8(_mm256_setzero_si256(), q[2 * c], load256(y.qs + 64 * c));
        const __m256i p_hi = dot_u8s8(_mm256_setzero_si256(), q[2 * c + 1], load256(y.qs + 64 * c + 32));
        sum = _mm256_dpwssd_epi32(sum, _mm256_packs_epi32(p_lo, p_hi), pair_scales[c]);
      }
#else
      for (int s = 0; s < 8; ++s) {
        const __m256i p = dot_u8s8(_mm256_setzero_si256(), q[s], load256(y.qs + 32 * s));
        sum = _mm256_add_epi32(sum, _mm256_mullo_epi32(p, _mm256_set1_epi32(scales_mins[s])));
      }
#endif
      acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dx * y.d), _mm256_cvtepi32_ps(sum), acc[t]);
      // bsums pairs (one per sub-block of 32) times the mins.
      const __m256i pairs = _mm256_madd_epi16(load256(y.bsums), ones16);
      acc_min[t] = _mm256_fmadd_ps(_mm256_set1_ps(dmin * y.d),
                                   _mm256_cvtepi32_ps(_mm256_mullo_epi32(pairs, mins)), acc_min[t]);
    }
  }
  for (int t = 0; t < kTokens; ++t) out[t] = hsum(_mm256_sub_ps(acc[t], acc_min[t]));
}

// Q6_K row against kTokens Q8_K rows; x = d * sc * (q - 32), the -32 taken through the bsums.
template <int kTokens>
void dot_q6_K_rows(const void* w, const void* a, size_t stride, int64_t n, float* out) {
  const auto* x = static_cast<const block_q6_K*>(w);
  const auto* act = static_cast<const uint8_t*>(a);
  const __m256i low_mask = _mm256_set1_epi8(0x0F);
  const __m256i two_bits = _mm256_set1_epi8(0x03);
  __m256 acc[kTokens], acc_offset[kTokens];
  for (int t = 0; t < kTokens; ++t) acc[t] = acc_offset[t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < n / QK_K; ++b) {
    __m256i q[8];      // 32 values each, covering scales 2k and 2k+1
#ifndef REALIZAR_CPU_VNNI
    __m256i scale[8];  // [scales[2k] x4, scales[2k+1] x4] as int32
#endif
    for (int h = 0; h < 2; ++h) {
      const __m256i qh = load256(x[b].qh + 32 * h);
      const __m256i ql0 = load256(x[b].ql + 64 * h);
      const __m256i ql1 = load256(x[b].ql + 64 * h + 32);
      const __m256i lows[4] = {_mm256_and_si256(ql0, low_mask), _mm256_and_si256(ql1, low_mask),
                               _mm256_and_si256(_mm256_srli_epi16(ql0, 4), low_mask),
                               _mm256_and_si256(_mm256_srli_epi16(ql1, 4), low_mask)};
      for (int g = 0; g < 4; ++g) {
        const __m256i high = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * g), two_bits);
        q[4 * h + g] = _mm256_or_si256(lows[g], _mm256_slli_epi16(high, 4));
#ifndef REALIZAR_CPU_VNNI
        const __m256i sc = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(x[b].scales + 8 * h)));
        const __m256i index = _mm256_setr_epi32(2 * g, 2 * g, 2 * g, 2 * g, 2 * g + 1, 2 * g + 1, 2 * g + 1, 2 * g + 1);
        scale[4 * h + g] = _mm256_permutevar8x32_epi32(sc, index);
#endif
      }
    }
    const __m256i scales16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x[b].scales)));
    const float dx = half_to_float(x[b].d);
#ifdef REALIZAR_CPU_VNNI
    // As in Q4_K: sums of 4 products (|p| <= 4 * 63 * 127) fit int16; groups 2j and 2j+1 are
    // packed into one vector whose 128-bit lanes hold [p(2j) | p(2j+1)] of scales 4j, 4j+2 (low)
    // and 4j+1, 4j+3 (high).
    __m256i pair_scales[4];
    for (int j = 0; j < 4; ++j) {
      const __m256i eight = _mm256_broadcastsi128_si256(j < 2 ? _mm256_castsi256_si128(scales16)
                                                              : _mm256_extracti128_si256(scales16, 1));
      const char a = static_cast<char>(8 * (j % 2)), b = a + 2, c = a + 4, d = a + 6;
      pair_scales[j] = _mm256_shuffle_epi8(
          eight, _mm256_setr_epi8(a, a + 1, a, a + 1, a, a + 1, a, a + 1, c, c + 1, c, c + 1, c, c + 1, c, c + 1,
                                  b, b + 1, b, b + 1, b, b + 1, b, b + 1, d, d + 1, d, d + 1, d, d + 1, d, d + 1));
    }
#endif
    for (int t = 0; t < kTokens; ++t) {
      const auto& y = reinterpret_cast<const block_q8_K*>(act + t * stride)[b];
      __m256i sum = _mm256_setzero_si256();
#ifdef REALIZAR_CPU_VNNI
      for (int j = 0; j < 4; ++j) {
        const __m256i p0 = dot_u8s8(_mm256_setzero_si256(), q[2 * j], load256(y.qs + 64 * j));
        const __m256i p1 = dot_u8s8(_mm256_setzero_si256(), q[2 * j + 1], load256(y.qs + 64 * j + 32));
        sum = _mm256_dpwssd_epi32(sum, _mm256_packs_epi32(p0, p1), pair_scales[j]);
      }
#else
      for (int k = 0; k < 8; ++k) {
        const __m256i p = dot_u8s8(_mm256_setzero_si256(), q[k], load256(y.qs + 32 * k));
        sum = _mm256_add_epi32(sum, _mm256_mullo_epi32(p, scale[k]));
      }
#endif
      const float d = dx * y.d;
      acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sum), acc[t]);
      const __m256i offset = _mm256_madd_epi16(scales16, load256(y.bsums));
      acc_offset[t] = _mm256_fmadd_ps(_mm256_set1_ps(32.0f * d), _mm256_cvtepi32_ps(offset), acc_offset[t]);
    }
  }
  for (int t = 0; t < kTokens; ++t) out[t] = hsum(_mm256_sub_ps(acc[t], acc_offset[t]));
}

// Q8_0, Q4_0 and Q5_0 (signed values after the offset) row against kTokens Q8_0 rows: the block
// is unpacked and its |q| taken once for all tokens.
template <typename Block, int kTokens>
void dot_signed_32_rows(const void* w, const void* a, size_t stride, int64_t n, float* out) {
  const auto* x = static_cast<const Block*>(w);
  const auto* act = static_cast<const uint8_t*>(a);
  __m256 acc[kTokens];
  for (int t = 0; t < kTokens; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < n / QK8_0; ++b) {
    __m256i q;
    if constexpr (std::is_same_v<Block, block_q8_0>) {
      q = load256(x[b].qs);
    } else if constexpr (std::is_same_v<Block, block_q5_0>) {
      q = _mm256_sub_epi8(_mm256_or_si256(unpack_nibbles_32(x[b].qs), expand_high_bits(x[b].qh)),
                          _mm256_set1_epi8(16));
    } else {
      q = _mm256_sub_epi8(unpack_nibbles_32(x[b].qs), _mm256_set1_epi8(8));
    }
    const __m256i q_abs = _mm256_abs_epi8(q);
    const float dx = half_to_float(x[b].d);
    for (int t = 0; t < kTokens; ++t) {
      const auto& y = reinterpret_cast<const block_q8_0*>(act + t * stride)[b];
      const __m256i p = dot_u8s8(_mm256_setzero_si256(), q_abs, _mm256_sign_epi8(load256(y.qs), q));
      acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dx * half_to_float(y.d)), _mm256_cvtepi32_ps(p), acc[t]);
    }
  }
  for (int t = 0; t < kTokens; ++t) out[t] = hsum(acc[t]);
}

template <void (*kRows)(const void*, const void*, size_t, int64_t, float*)>
float single_token(const void* w, const void* a, int64_t n) {
  float out;
  kRows(w, a, 0, n, &out);
  return out;
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
      [x](int64_t i) { return half_to_float(x[i]); });
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
using RowsKernel = void (*)(const void*, const void*, size_t, int64_t, float*);

template <RowsKernel k1, RowsKernel k2, RowsKernel k3, RowsKernel k4>
void multi_token(const void* w, const void* a, size_t stride, int tokens, int64_t n, float* out) {
  switch (tokens) {
    case 1: k1(w, a, stride, n, out); break;
    case 2: k2(w, a, stride, n, out); break;
    case 3: k3(w, a, stride, n, out); break;
    default: k4(w, a, stride, n, out); break;
  }
}
#endif  // REALIZAR_CPU_AVX2

}  // namespace

MultiDotKernel multi_dot_kernel(TensorType weight_type) {
#ifdef REALIZAR_CPU_AVX2
  switch (weight_type) {
    case TensorType::Q4_K:
      return multi_token<dot_q4_q5_K_rows<block_q4_K, false, 1>, dot_q4_q5_K_rows<block_q4_K, false, 2>,
                         dot_q4_q5_K_rows<block_q4_K, false, 3>, dot_q4_q5_K_rows<block_q4_K, false, 4>>;
    case TensorType::Q5_K:
      return multi_token<dot_q4_q5_K_rows<block_q5_K, true, 1>, dot_q4_q5_K_rows<block_q5_K, true, 2>,
                         dot_q4_q5_K_rows<block_q5_K, true, 3>, dot_q4_q5_K_rows<block_q5_K, true, 4>>;
    case TensorType::Q6_K:
      return multi_token<dot_q6_K_rows<1>, dot_q6_K_rows<2>, dot_q6_K_rows<3>, dot_q6_K_rows<4>>;
    case TensorType::Q8_0:
      return multi_token<dot_signed_32_rows<block_q8_0, 1>, dot_signed_32_rows<block_q8_0, 2>,
                         dot_signed_32_rows<block_q8_0, 3>, dot_signed_32_rows<block_q8_0, 4>>;
    case TensorType::Q5_0:
      return multi_token<dot_signed_32_rows<block_q5_0, 1>, dot_signed_32_rows<block_q5_0, 2>,
                         dot_signed_32_rows<block_q5_0, 3>, dot_signed_32_rows<block_q5_0, 4>>;
    case TensorType::Q4_0:
      return multi_token<dot_signed_32_rows<block_q4_0, 1>, dot_signed_32_rows<block_q4_0, 2>,
                         dot_signed_32_rows<block_q4_0, 3>, dot_signed_32_rows<block_q4_0, 4>>;
    default: break;
  }
#endif
  (void)weight_type;
  return nullptr;
}

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
    case TensorType::Q8_0: return single_token<dot_signed_32_rows<block_q8_0, 1>>;
    case TensorType::Q4_0: return single_token<dot_signed_32_rows<block_q4_0, 1>>;
    case TensorType::Q4_1: return dot_q4_1_q5_1_avx2<block_q4_1, false>;
    case TensorType::Q5_0: return single_token<dot_signed_32_rows<block_q5_0, 1>>;
    case TensorType::Q5_1: return dot_q4_1_q5_1_avx2<block_q5_1, true>;
    case TensorType::Q4_K: return single_token<dot_q4_q5_K_rows<block_q4_K, false, 1>>;
    case TensorType::Q5_K: return single_token<dot_q4_q5_K_rows<block_q5_K, true, 1>>;
    case TensorType::Q6_K: return single_token<dot_q6_K_rows<1>>;
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
#ifdef REALIZAR_CPU_VNNI
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
