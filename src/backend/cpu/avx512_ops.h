// The AVX-512 vector operations of the 16-row packed groups (one int32 or float lane per row),
// shared by kernels_avx512.cpp (the x86_kernels.h tiles over them) and kernels_amx.cpp (the
// scaling and combination after its tile products, which must be the VNNI kernels' own). Included
// only after a file's AVX-512 target pragma, like x86_kernels.h, and with internal linkage for the
// same reason.
#pragma once

#if !defined(REALIZAR_X86_KERNELS_TU)
#error "avx512_ops.h is included only by kernels_avx512.cpp and kernels_amx.cpp, after their target pragma"
#endif

namespace realizar::cpu {
namespace {

struct Avx512Ops {
  static constexpr int kLanes = 16;
  using I = __m512i;  // 16 int32: one per row of the group
  using F = __m512;
  using B = __m512i;  // 64 bytes: 4 per row

  // The 4 bytes at p in every 32-bit lane.
  static I broadcast4(const void* p) {
    int32_t v;
    std::memcpy(&v, p, sizeof v);
    return _mm512_set1_epi32(v);
  }
  static I zero_i() { return _mm512_setzero_si512(); }
  static F zero_f() { return _mm512_setzero_ps(); }
  static B load(const void* p) { return _mm512_loadu_si512(p); }
  static B low_nibbles(B v) { return _mm512_and_si512(v, _mm512_set1_epi8(0x0F)); }
  static B high_nibbles(B v) { return _mm512_and_si512(_mm512_srli_epi16(v, 4), _mm512_set1_epi8(0x0F)); }
  static B or_(B a, B b) { return _mm512_or_si512(a, b); }
  // Sets bit 4 of byte j where bit j of `bits` is set (the bits are a byte mask; bit 4 is clear in
  // a nibble, so adding 16 sets it).
  static B or_bit4(B v, uint64_t bits) { return _mm512_mask_add_epi8(v, _cvtu64_mask64(bits), v, _mm512_set1_epi8(0x10)); }
  // Bits 2v, 2v + 1 of each byte moved to bits 4, 5 (the top of a 6-bit value).
  template <int v>
  static B q6_high(B qh) {
    B moved;
    if constexpr (v == 0) moved = _mm512_slli_epi16(qh, 4);
    else if constexpr (v == 1) moved = _mm512_slli_epi16(qh, 2);
    else if constexpr (v == 2) moved = qh;
    else moved = _mm512_srli_epi16(qh, 2);
    return _mm512_and_si512(moved, _mm512_set1_epi8(0x30));
  }
  // acc + the dot products of each lane's 4 unsigned bytes of u with the 4 signed bytes at a4.
  static I dot(I acc, B u, const int8_t* a4) { return _mm512_dpbusd_epi32(acc, u, broadcast4(a4)); }
  // Signed weights: q + 128 is unsigned; dot_signed then returns dot + 128 * sum(a).
  struct Signed {
    B biased;
  };
  static constexpr int kSignedBias = 128;
  static Signed prepare_signed(B w) { return {_mm512_xor_si512(w, _mm512_set1_epi8(static_cast<char>(0x80)))}; }
  static I dot_signed(I acc, const Signed& w, const int8_t* a4) { return dot(acc, w.biased, a4); }
  // acc + pairs . (the int16 pair at b2), lane by lane.
  static I madd16(I acc, I pairs, const int16_t* b2) { return _mm512_dpwssd_epi32(acc, pairs, broadcast4(b2)); }
  static I u8_to_i32(const uint8_t* p) { return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static I u8pairs_to_i16(const uint8_t* p) { return _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  static I s8pairs_to_i16(const int8_t* p) { return _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  static I even_i16(I pairs) { return _mm512_srai_epi32(_mm512_slli_epi32(pairs, 16), 16); }
  static I odd_i16(I pairs) { return _mm512_srai_epi32(pairs, 16); }
  static I set1_i(int32_t v) { return _mm512_set1_epi32(v); }
  static I add(I a, I b) { return _mm512_add_epi32(a, b); }
  static I sub(I a, I b) { return _mm512_sub_epi32(a, b); }
  static I mullo(I a, I b) { return _mm512_mullo_epi32(a, b); }
  static I shl5(I a) { return _mm512_slli_epi32(a, 5); }
  static F cvt(I v) { return _mm512_cvtepi32_ps(v); }
  static F half(const ggml_half* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  static F set1(float v) { return _mm512_set1_ps(v); }
  static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  static F fma(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  static F fnma(F a, F b, F c) { return _mm512_fnmadd_ps(a, b, c); }
  static void store(float* p, F v) { _mm512_storeu_ps(p, v); }
};

}  // namespace
}  // namespace realizar::cpu
