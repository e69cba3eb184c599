// The AVX2 kernel set: x86_kernels.h over 8-row vectors (a packed group in two passes), u8 x s8
// products by vpmaddubsw + vpmaddwd (their int16 pair sums cannot saturate: the unsigned values
// are at most 63, and Q8_0's signed ones go through |w| and sign(a, w)).
#if defined(__x86_64__)
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "backend/cpu/kernels.h"
#include "backend/cpu/packed_weights.h"

// Everything below is compiled for AVX2 (see x86_kernels.h for why the pragma comes last).
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif

#define REALIZAR_X86_KERNELS_TU
#include "backend/cpu/x86_kernels.h"

namespace realizar::cpu {
namespace {

struct Avx2Ops {
  static constexpr int kLanes = 8;
  // The 4 bytes at p in every 32-bit lane.
  static __m256i broadcast4(const void* p) {
    int32_t v;
    std::memcpy(&v, p, sizeof v);
    return _mm256_set1_epi32(v);
  }
  using I = __m256i;  // 8 int32: one per row of half a group
  using F = __m256;
  using B = __m256i;  // 32 bytes: 4 per row

  static I zero_i() { return _mm256_setzero_si256(); }
  static F zero_f() { return _mm256_setzero_ps(); }
  static B load(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
  static B low_nibbles(B v) { return _mm256_and_si256(v, _mm256_set1_epi8(0x0F)); }
  static B high_nibbles(B v) { return _mm256_and_si256(_mm256_srli_epi16(v, 4), _mm256_set1_epi8(0x0F)); }
  static B or_(B a, B b) { return _mm256_or_si256(a, b); }
  // Sets bit 4 of byte j where bit j of the low 32 bits of `bits` is set.
  static B or_bit4(B v, uint64_t bits) {
    const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int32_t>(bits)),
                                               _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,  //
                                                                2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
    const __m256i select = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ULL));
    const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, select), select);
    return _mm256_or_si256(v, _mm256_and_si256(set, _mm256_set1_epi8(0x10)));
  }
  template <int v>
  static B q6_high(B qh) {
    B moved;
    if constexpr (v == 0) moved = _mm256_slli_epi16(qh, 4);
    else if constexpr (v == 1) moved = _mm256_slli_epi16(qh, 2);
    else if constexpr (v == 2) moved = qh;
    else moved = _mm256_srli_epi16(qh, 2);
    return _mm256_and_si256(moved, _mm256_set1_epi8(0x30));
  }
  static I dot(I acc, B u, const int8_t* a4) {
    const __m256i pairs = _mm256_maddubs_epi16(u, broadcast4(a4));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
  }
  // Signed weights: |w| times sign(w) applied to the activations (|w|, |a| <= 127: no saturation).
  struct Signed {
    B magnitude;
    B sign;
  };
  static constexpr int kSignedBias = 0;
  static Signed prepare_signed(B w) { return {_mm256_abs_epi8(w), w}; }
  static I dot_signed(I acc, const Signed& w, const int8_t* a4) {
    const __m256i a = _mm256_sign_epi8(broadcast4(a4), w.sign);
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(w.magnitude, a), _mm256_set1_epi16(1)));
  }
  static I madd16(I acc, I pairs, const int16_t* b2) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, broadcast4(b2)));
  }
  static I u8_to_i32(const uint8_t* p) { return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))); }
  static I u8pairs_to_i16(const uint8_t* p) { return _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static I s8pairs_to_i16(const int8_t* p) { return _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static I even_i16(I pairs) { return _mm256_srai_epi32(_mm256_slli_epi32(pairs, 16), 16); }
  static I odd_i16(I pairs) { return _mm256_srai_epi32(pairs, 16); }
  static I set1_i(int32_t v) { return _mm256_set1_epi32(v); }
  static I add(I a, I b) { return _mm256_add_epi32(a, b); }
  static I sub(I a, I b) { return _mm256_sub_epi32(a, b); }
  static I mullo(I a, I b) { return _mm256_mullo_epi32(a, b); }
  static I shl5(I a) { return _mm256_slli_epi32(a, 5); }
  static F cvt(I v) { return _mm256_cvtepi32_ps(v); }
  static F half(const ggml_half* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static F set1(float v) { return _mm256_set1_ps(v); }
  static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  static F fma(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  static F fnma(F a, F b, F c) { return _mm256_fnmadd_ps(a, b, c); }
  static void store(float* p, F v) { _mm256_storeu_ps(p, v); }
};

}  // namespace
}  // namespace realizar::cpu

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

namespace realizar::cpu {

// Portable code (the target ends above): called only once the CPU is known to run the set.
const KernelSet& avx2_kernels() {
  static const KernelSet set = make_kernel_set<Avx2Ops, 4>(Isa::Avx2);
  return set;
}

}  // namespace realizar::cpu
#endif  // __x86_64__
