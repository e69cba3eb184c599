// The x86 kernels, written once over an `Ops` class of vector operations and compiled twice: by
// kernels_avx2.cpp (Ops = 8 rows of a packed group per pass, AVX2 + FMA + F16C) and by
// kernels_avx512.cpp (16 rows per pass, AVX-512 VNNI). Each of those files enables its instruction
// set with `#pragma GCC target` *after* including every other header, then includes this one, so
// only code defined here and in the file itself is compiled for that set: inline functions of
// other headers (the standard library's included) keep the portable target, and the linker can
// never hand their AVX-512 copy to portable code. Everything here has internal linkage for the
// same reason: each including file gets its own copy.
//
// The GEMM tiles (the matrix kernels of kernels.h) keep, for T tokens at once, T float
// accumulators of the group's rows in registers: each packed weight chunk is loaded and unpacked
// once and multiplied against T tokens' activations (broadcast 4 bytes at a time, vpdpbusd
// u8 x s8 -> int32), so for prefill the unpacking cost is shared by T tokens. The arithmetic of
// one token does not depend on T or on the other tokens: results are bit-identical whatever the
// batch around a token, for one kernel set.
#pragma once

#if !defined(REALIZAR_X86_KERNELS_TU)
#error "x86_kernels.h is included only by kernels_avx2.cpp and kernels_avx512.cpp, after their target pragma"
#endif

namespace realizar::cpu {
namespace {

// Calls f.template operator()<N>() for the compile-time N equal to n, 1 <= n <= kMax.
template <int kMax, typename F>
void with_count(int n, F&& f) {
  if constexpr (kMax > 1) {
    if (n < kMax) return with_count<kMax - 1>(n, f);
  }
  f.template operator()<kMax>();
}

// A GemmKernel from a tile kernel of up to kTile tokens: tiles of kTile tokens, then the rest.
template <typename Tile, int kTile>
void gemm(const uint8_t* group, const uint8_t* act, size_t act_stride, int64_t tokens, int64_t blocks, float* out) {
  const uint8_t* rows[kTile];
  for (int64_t t = 0; t < tokens; t += kTile) {
    const int n = static_cast<int>(std::min<int64_t>(kTile, tokens - t));
    for (int i = 0; i < n; ++i) rows[i] = act + static_cast<size_t>(t + i) * act_stride;
    with_count<kTile>(n, [&]<int N>() { Tile::template run<N>(group, rows, blocks, out + t * kGroupRows); });
  }
}

// ---- GEMM tiles ---------------------------------------------------------------------------------

// The loop every tile runs: for each pass of Ops::kLanes rows of the group, T float accumulators
// start at zero, `block(p, a, lane0, acc)` adds packed block b (p) against the T tokens'
// activation blocks b (a[t]), and the accumulators are stored as out[t][row].
template <typename Ops, int T, typename Packed, typename Act, typename Block>
void tile_loop(const uint8_t* group, const uint8_t* const* act, int64_t blocks, float* out, const Block& block) {
  using F = typename Ops::F;
  const auto* packed = reinterpret_cast<const Packed*>(group);
  for (int lane0 = 0; lane0 < kGroupRows; lane0 += Ops::kLanes) {
    F acc[T];
    for (int t = 0; t < T; ++t) acc[t] = Ops::zero_f();
    for (int64_t b = 0; b < blocks; ++b) {
      const Act* a[T];
      for (int t = 0; t < T; ++t) a[t] = reinterpret_cast<const Act*>(act[t]) + b;
      block(packed[b], a, lane0, acc);
    }
    for (int t = 0; t < T; ++t) Ops::store(out + t * kGroupRows + lane0, acc[t]);
  }
}

// Q4_0, Q4_1, Q5_0, Q5_1: per block and token, dot(q, qa) - offset * sum(qa) over 32 columns in
// int32 (exact), then acc += (d * dot) * d_a, plus m * s_a for a min (Q4_1, Q5_1).
template <typename Ops, typename Packed, int kOffset>
struct Tile32 {
  template <int T>
  static void run(const uint8_t* group, const uint8_t* const* act, int64_t blocks, float* out) {
    using I = typename Ops::I;
    using F = typename Ops::F;
    const auto block = [](const Packed& p, const ActBlock32* const (&a)[T], int lane0, F (&acc)[T]) {
      I dot[T];
      for (int t = 0; t < T; ++t) dot[t] = Ops::zero_i();
      for (int c = 0; c < 4; ++c) {
        const typename Ops::B bytes = Ops::load(p.qs[c] + 4 * lane0);
        typename Ops::B low = Ops::low_nibbles(bytes), high = Ops::high_nibbles(bytes);
        if constexpr (HasHighBits<Packed>) {
          low = Ops::or_bit4(low, p.qh[c][0] >> (4 * lane0));
          high = Ops::or_bit4(high, p.qh[c][1] >> (4 * lane0));
        }
        for (int t = 0; t < T; ++t) {
          dot[t] = Ops::dot(dot[t], low, a[t]->qs + 4 * c);
          dot[t] = Ops::dot(dot[t], high, a[t]->qs + 16 + 4 * c);
        }
      }
      const F d = Ops::half(p.d + lane0);
      for (int t = 0; t < T; ++t) {
        if constexpr (kOffset != 0) dot[t] = Ops::sub(dot[t], Ops::set1_i(kOffset * a[t]->sum));
        acc[t] = Ops::fma(Ops::mul(Ops::cvt(dot[t]), d), Ops::set1(a[t]->d), acc[t]);
        if constexpr (HasMin<Packed>) acc[t] = Ops::fma(Ops::half(p.m + lane0), Ops::set1(a[t]->s), acc[t]);
      }
    };
    tile_loop<Ops, T, Packed, ActBlock32>(group, act, blocks, out, block);
  }
};

// Q8_0: signed weights; Ops::dot_signed gives dot(q, qa) + kSignedBias * sum(qa) (AVX-512 adds 128
// to make them unsigned), the bias taken back off the integer sum.
template <typename Ops>
struct TileQ8_0 {
  template <int T>
  static void run(const uint8_t* group, const uint8_t* const* act, int64_t blocks, float* out) {
    using I = typename Ops::I;
    using F = typename Ops::F;
    const auto block = [](const PackedQ8_0& p, const ActBlock32* const (&a)[T], int lane0, F (&acc)[T]) {
      I dot[T];
      for (int t = 0; t < T; ++t) dot[t] = Ops::zero_i();
      for (int c = 0; c < 8; ++c) {
        const typename Ops::Signed w = Ops::prepare_signed(Ops::load(p.qs[c] + 4 * lane0));
        for (int t = 0; t < T; ++t) dot[t] = Ops::dot_signed(dot[t], w, a[t]->qs + 4 * c);
      }
      const F d = Ops::half(p.d + lane0);
      for (int t = 0; t < T; ++t) {
        if constexpr (Ops::kSignedBias != 0) dot[t] = Ops::sub(dot[t], Ops::set1_i(Ops::kSignedBias * a[t]->sum));
        acc[t] = Ops::fma(Ops::mul(Ops::cvt(dot[t]), d), Ops::set1(a[t]->d), acc[t]);
      }
    };
    tile_loop<Ops, T, PackedQ8_0, ActBlock32>(group, act, blocks, out, block);
  }
};

// Q4_K / Q5_K: per super-block and token, sum_s sc_s * dot_s(q, qa) and sum_s m_s * bsum32_s in
// int32, then acc += d * d_a * scaled - dmin * d_a * mins.
template <typename Ops, typename Packed>
struct TileQ4Q5K {
  template <int T>
  static void run(const uint8_t* group, const uint8_t* const* act, int64_t blocks, float* out) {
    using I = typename Ops::I;
    using F = typename Ops::F;
    const auto block = [](const Packed& p, const ActBlockK* const (&a)[T], int lane0, F (&acc)[T]) {
      I scaled[T];
      for (int t = 0; t < T; ++t) scaled[t] = Ops::zero_i();
      for (int s = 0; s < 8; ++s) {
        const int pair = s / 2, h = s % 2;
        I dot[T];
        for (int t = 0; t < T; ++t) dot[t] = Ops::zero_i();
        for (int c = 0; c < 8; ++c) {
          const int w = 8 * pair + c;
          const typename Ops::B bytes = Ops::load(p.qs[w] + 4 * lane0);
          typename Ops::B q = h ? Ops::high_nibbles(bytes) : Ops::low_nibbles(bytes);
          if constexpr (HasHighBits<Packed>) q = Ops::or_bit4(q, p.qh[w][h] >> (4 * lane0));
          for (int t = 0; t < T; ++t) dot[t] = Ops::dot(dot[t], q, a[t]->qs + 32 * s + 4 * c);
        }
        const I sc = Ops::u8_to_i32(p.scales[s] + lane0);
        for (int t = 0; t < T; ++t) scaled[t] = Ops::add(scaled[t], Ops::mullo(dot[t], sc));
      }
      I mins[T];
      for (int t = 0; t < T; ++t) mins[t] = Ops::zero_i();
      for (int pair = 0; pair < 4; ++pair) {
        const I m = Ops::u8pairs_to_i16(&p.mins[pair][lane0][0]);
        for (int t = 0; t < T; ++t) mins[t] = Ops::madd16(mins[t], m, a[t]->bsums32 + 2 * pair);
      }
      const F d = Ops::half(p.d + lane0), dmin = Ops::half(p.dmin + lane0);
      for (int t = 0; t < T; ++t) {
        const F da = Ops::set1(a[t]->d);
        acc[t] = Ops::fma(Ops::cvt(scaled[t]), Ops::mul(d, da), acc[t]);
        acc[t] = Ops::fnma(Ops::cvt(mins[t]), Ops::mul(dmin, da), acc[t]);
      }
    };
    tile_loop<Ops, T, Packed, ActBlockK>(group, act, blocks, out, block);
  }
};

// Q6_K: per super-block and token, sum_j sc_j * dot_j(q, qa) - 32 * sum_j sc_j * bsum_j in int32
// (q unsigned 0..63), then acc += d * d_a * that.
template <typename Ops>
struct TileQ6K {
  template <int T>
  static void run(const uint8_t* group, const uint8_t* const* act, int64_t blocks, float* out) {
    using I = typename Ops::I;
    using F = typename Ops::F;
    using B = typename Ops::B;
    const auto block = [](const PackedQ6_K& p, const ActBlockK* const (&a)[T], int lane0, F (&acc)[T]) {
      I scaled[T];
      for (int t = 0; t < T; ++t) scaled[t] = Ops::zero_i();
      for (int pair = 0; pair < 8; ++pair) {
        const I scale_pairs = Ops::s8pairs_to_i16(&p.scales[pair][lane0][0]);
        const I scales[2] = {Ops::even_i16(scale_pairs), Ops::odd_i16(scale_pairs)};
        for (int h = 0; h < 2; ++h) {
          const int j = 2 * pair + h;
          const PackedQ6_K::SubBlock& sub = p.sub[j];
          const B ql0 = Ops::load(sub.ql[0] + 4 * lane0), ql1 = Ops::load(sub.ql[1] + 4 * lane0);
          const B qh = Ops::load(sub.qh + 4 * lane0);
          const B q[4] = {Ops::or_(Ops::low_nibbles(ql0), Ops::template q6_high<0>(qh)),
                          Ops::or_(Ops::high_nibbles(ql0), Ops::template q6_high<1>(qh)),
                          Ops::or_(Ops::low_nibbles(ql1), Ops::template q6_high<2>(qh)),
                          Ops::or_(Ops::high_nibbles(ql1), Ops::template q6_high<3>(qh))};
          I dot[T];
          for (int t = 0; t < T; ++t) dot[t] = Ops::zero_i();
          for (int v = 0; v < 4; ++v) {
            for (int t = 0; t < T; ++t) dot[t] = Ops::dot(dot[t], q[v], a[t]->qs + 16 * j + 4 * v);
          }
          for (int t = 0; t < T; ++t) scaled[t] = Ops::add(scaled[t], Ops::mullo(dot[t], scales[h]));
        }
      }
      I offsets[T];
      for (int t = 0; t < T; ++t) offsets[t] = Ops::zero_i();
      for (int pair = 0; pair < 8; ++pair) {
        const I scale_pairs = Ops::s8pairs_to_i16(&p.scales[pair][lane0][0]);
        for (int t = 0; t < T; ++t) offsets[t] = Ops::madd16(offsets[t], scale_pairs, a[t]->bsums + 2 * pair);
      }
      const F d = Ops::half(p.d + lane0);
      for (int t = 0; t < T; ++t) {
        const I total = Ops::sub(scaled[t], Ops::shl5(offsets[t]));
        acc[t] = Ops::fma(Ops::cvt(total), Ops::mul(d, Ops::set1(a[t]->d)), acc[t]);
      }
    };
    tile_loop<Ops, T, PackedQ6_K, ActBlockK>(group, act, blocks, out, block);
  }
};

// ---- 8-wide float helpers (AVX2 + FMA + F16C; both sets use them) ------------------------------

float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

float hmax(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

int32_t hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

__m256 abs_ps(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

// e^x for 8 floats, Cephes' expf: x = n ln2 + r, |r| <= ln2 / 2, e^r by a degree-5 polynomial,
// 2^n through the exponent bits. Relative error below 2e-7 for x in [-87, 88]; smaller inputs
// give 0 (the softmax's masked and far-below-maximum scores).
__m256 exp_ps(__m256 x) {
  const __m256 lo = _mm256_set1_ps(-87.3f);
  const __m256 small = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
  x = _mm256_min_ps(_mm256_max_ps(x, lo), _mm256_set1_ps(88.3f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  // r = x - n ln2 in two steps (Cody-Waite), keeping r exact to float precision.
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i exponent = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_andnot_ps(small, _mm256_mul_ps(p, _mm256_castsi256_ps(exponent)));
}

float dot_f32(const float* w, const float* x, int64_t n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), acc1);
  }
  for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), acc0);
  float sum = hsum(_mm256_add_ps(acc0, acc1));
  for (; i < n; ++i) sum += w[i] * x[i];
  return sum;
}

__m256 load_f16(const ggml_half* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }

__m256 load_bf16(const uint16_t* p) {
  const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}

template <typename T, typename Load, typename Scalar>
float dot_converted(const T* w, const float* x, int64_t n, Load load, Scalar scalar) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(load(w + i), _mm256_loadu_ps(x + i), acc0);
    acc1 = _mm256_fmadd_ps(load(w + i + 8), _mm256_loadu_ps(x + i + 8), acc1);
  }
  for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(load(w + i), _mm256_loadu_ps(x + i), acc0);
  float sum = hsum(_mm256_add_ps(acc0, acc1));
  for (; i < n; ++i) sum += scalar(w[i]) * x[i];
  return sum;
}

float dot_f16(const ggml_half* w, const float* x, int64_t n) {
  return dot_converted(w, x, n, load_f16, [](ggml_half h) { return _cvtsh_ss(h); });
}

float dot_bf16(const uint16_t* w, const float* x, int64_t n) {
  return dot_converted(w, x, n, load_bf16, bf16_to_fp32);
}

void to_f16(const float* x, ggml_half* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  for (; i < n; ++i) y[i] = static_cast<ggml_half>(_cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

void swiglu(const float* gate, const float* up, float* out, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    const __m256 silu = _mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), exp_ps(_mm256_sub_ps(_mm256_setzero_ps(), g))));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(silu, _mm256_loadu_ps(up + i)));
  }
  for (; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

// ---- activation quantizers: the scalar set's results, bit for bit ------------------------------

// 32 int32 values (four vectors) to int8, saturating (the clamp to [-128, 127]), in order.
void store_i8x32(const __m256i q[4], int8_t* dst) {
  const __m256i words = _mm256_packs_epi32(q[0], q[1]);  // lanes interleave per 128 bits
  const __m256i words2 = _mm256_packs_epi32(q[2], q[3]);
  const __m256i bytes = _mm256_packs_epi16(words, words2);
  // packs works within 128-bit lanes: dword order is 0 4 1 5 2 6 3 7 for (q0 q1 q2 q3) groups.
  const __m256i ordered = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), ordered);
}

void quantize_k(const float* x, ActBlockK* out, int64_t n) {
  for (int64_t b = 0; b < n / QK_K; ++b, x += QK_K) {
    ActBlockK& block = out[b];
    __m256 amax_v = _mm256_setzero_ps();
    for (int i = 0; i < QK_K; i += 8) amax_v = _mm256_max_ps(amax_v, abs_ps(_mm256_loadu_ps(x + i)));
    const float amax = hmax(amax_v);
    float max = 0.0f;  // the value of largest magnitude, the first one on ties (as the scalar set)
    if (amax > 0.0f) {
      for (int i = 0; i < QK_K; i += 8) {
        const int hits = _mm256_movemask_ps(_mm256_cmp_ps(abs_ps(_mm256_loadu_ps(x + i)), _mm256_set1_ps(amax), _CMP_EQ_OQ));
        if (hits != 0) {
          max = x[i + __builtin_ctz(static_cast<unsigned>(hits))];
          break;
        }
      }
    }
    const float iscale = max != 0.0f ? -127.0f / max : 0.0f;
    block.d = iscale != 0.0f ? 1.0f / iscale : 0.0f;
    const __m256 scale = _mm256_set1_ps(iscale);
    for (int i = 0; i < QK_K; i += 32) {
      __m256i q[4];
      for (int k = 0; k < 4; ++k) q[k] = _mm256_cvtps_epi32(_mm256_mul_ps(scale, _mm256_loadu_ps(x + i + 8 * k)));
      store_i8x32(q, block.qs + i);
      // |iscale * x| <= 127 up to rounding, so the sums of the int32 values are those of the bytes.
      block.bsums[i / 16] = static_cast<int16_t>(hsum_i32(_mm256_add_epi32(q[0], q[1])));
      block.bsums[i / 16 + 1] = static_cast<int16_t>(hsum_i32(_mm256_add_epi32(q[2], q[3])));
      block.bsums32[i / 32] = static_cast<int16_t>(block.bsums[i / 16] + block.bsums[i / 16 + 1]);
    }
  }
}

// round(v) with halves away from zero (C's roundf), exactly: trunc(v) plus the sign where the
// (exact) fraction is at least one half.
__m256 round_half_away(__m256 v) {
  const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m256 up = _mm256_cmp_ps(abs_ps(_mm256_sub_ps(v, t)), _mm256_set1_ps(0.5f), _CMP_GE_OQ);
  const __m256 one = _mm256_or_ps(_mm256_and_ps(v, _mm256_set1_ps(-0.0f)), _mm256_set1_ps(1.0f));
  return _mm256_add_ps(t, _mm256_and_ps(up, one));
}

void quantize_32(const float* x, ActBlock32* out, int64_t n) {
  for (int64_t b = 0; b < n / 32; ++b, x += 32) {
    __m256 v[4];
    __m256 amax_v = _mm256_setzero_ps();
    for (int k = 0; k < 4; ++k) {
      v[k] = _mm256_loadu_ps(x + 8 * k);
      amax_v = _mm256_max_ps(amax_v, abs_ps(v[k]));
    }
    const float d = hmax(amax_v) / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    __m256i q[4];
    __m256i sum = _mm256_setzero_si256();
    for (int k = 0; k < 4; ++k) {
      q[k] = _mm256_cvttps_epi32(round_half_away(_mm256_mul_ps(v[k], _mm256_set1_ps(id))));
      sum = _mm256_add_epi32(sum, q[k]);
    }
    store_i8x32(q, out[b].qs);
    out[b].d = _cvtsh_ss(static_cast<ggml_half>(_cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)));
    out[b].sum = hsum_i32(sum);
    out[b].s = out[b].d * static_cast<float>(out[b].sum);
  }
}

// ---- attention (kernels.h AttentionArgs), 8 floats at a time -----------------------------------

void attention(const AttentionArgs& args) {
  const int64_t head_dim = args.head_dim;
  const auto [longest, stride, block, scores] = attention_scratch_layout(args);
  for (int64_t start = 0; start < longest; start += 16) {
    const ggml_half* keys = args.keys + args.block_table[start / 16] * args.key_block_stride;
    for (int64_t e = 0; e < 16 * head_dim; e += 8) _mm256_storeu_ps(block + e, load_f16(keys + e));
    // 16 keys' scores at once: sum over e of q[e] * (element e of the 16 keys).
    for (int64_t i = 0; i < args.queries; ++i) {
      if (args.lengths[i] <= start) continue;
      const float* q = args.q[i];
      __m256 low = _mm256_setzero_ps(), high = _mm256_setzero_ps();
      for (int64_t e = 0; e < head_dim; ++e) {
        const __m256 qe = _mm256_set1_ps(q[e]);
        low = _mm256_fmadd_ps(qe, _mm256_loadu_ps(block + 16 * e), low);
        high = _mm256_fmadd_ps(qe, _mm256_loadu_ps(block + 16 * e + 8), high);
      }
      const __m256 scale = _mm256_set1_ps(args.scale);
      _mm256_storeu_ps(scores + i * stride + start, _mm256_mul_ps(low, scale));
      _mm256_storeu_ps(scores + i * stride + start + 8, _mm256_mul_ps(high, scale));
    }
  }
  // Each query's softmax over its positions; the rest of its last block is -inf, which exp_ps
  // turns into 0.
  for (int64_t i = 0; i < args.queries; ++i) {
    float* s = scores + i * stride;
    const int64_t length = args.lengths[i], padded = whole_blocks(length);
    float max = -INFINITY;
    for (int64_t j = 0; j < length; ++j) max = std::max(max, s[j]);
    std::fill(s + length, s + padded, -INFINITY);
    __m256 total = _mm256_setzero_ps();
    for (int64_t j = 0; j < padded; j += 8) {
      const __m256 p = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(s + j), _mm256_set1_ps(max)));
      _mm256_storeu_ps(s + j, p);
      total = _mm256_add_ps(total, p);
    }
    const __m256 inverse = _mm256_set1_ps(1.0f / hsum(total));
    for (int64_t j = 0; j < padded; j += 8) _mm256_storeu_ps(s + j, _mm256_mul_ps(_mm256_loadu_ps(s + j), inverse));
    std::fill_n(args.out[i], head_dim, 0.0f);
  }
  for (int64_t start = 0; start < longest; start += 16) {
    const int64_t slot0 = static_cast<int64_t>(args.block_table[start / 16]) * 16;
    const int64_t count = std::min<int64_t>(16, longest - start);
    for (int64_t j = 0; j < count; ++j) {
      const ggml_half* row = args.values + (slot0 + j) * args.value_stride;
      for (int64_t e = 0; e < head_dim; e += 8) _mm256_storeu_ps(block + j * head_dim + e, load_f16(row + e));
    }
    for (int64_t i = 0; i < args.queries; ++i) {
      const int64_t valid = std::min(count, args.lengths[i] - start);
      const float* p = scores + i * stride + start;
      float* o = args.out[i];
      for (int64_t e = 0; e < head_dim && valid > 0; e += 8) {
        __m256 acc = _mm256_loadu_ps(o + e);
        for (int64_t j = 0; j < valid; ++j) acc = _mm256_fmadd_ps(_mm256_set1_ps(p[j]), _mm256_loadu_ps(block + j * head_dim + e), acc);
        _mm256_storeu_ps(o + e, acc);
      }
    }
  }
}

// The kernel set over `Ops`, each tile of up to kTile tokens.
template <typename Ops, int kTile>
KernelSet make_kernel_set(Isa isa) {
  return KernelSet{
      isa,
      {gemm<Tile32<Ops, PackedQ4_0, 8>, kTile>, gemm<Tile32<Ops, PackedQ4_1, 0>, kTile>,
       gemm<Tile32<Ops, PackedQ5_0, 16>, kTile>, gemm<Tile32<Ops, PackedQ5_1, 0>, kTile>,
       gemm<TileQ8_0<Ops>, kTile>, gemm<TileQ4Q5K<Ops, PackedQ4_K>, kTile>,
       gemm<TileQ4Q5K<Ops, PackedQ5_K>, kTile>, gemm<TileQ6K<Ops>, kTile>},
      attention,
      quantize_k,
      quantize_32,
      dot_f32,
      dot_f16,
      dot_bf16,
      to_f16,
      swiglu,
  };
}

}  // namespace
}  // namespace realizar::cpu
