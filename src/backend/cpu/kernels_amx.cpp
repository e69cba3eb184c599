// The AMX kernel set: the AVX-512 VNNI set (kernels_avx512.cpp) with GEMM kernels for Q8_0, Q4_K
// and Q5_K that run every whole tile of 16 tokens on the tile unit (Intel AMX-INT8: TDPBSUD and
// TDPBSSD, Intel 64 and IA-32 Architectures Software Developer's Manual vol. 1 ch. 18 and the
// Instruction Set Reference) and hand the tokens left over to the VNNI kernels. The other packed
// types keep the VNNI kernels: one tile product per 16 (Q6_K) or per 32 columns with 4-bit
// unpacking (Q4_0..Q5_1) was no faster (docs/perf-notes.md, "AMX tiles for prefill").
//
// The packed layout (packed_weights.h) is already the tile unit's B operand: a 64-byte chunk,
// "16 rows x 4 consecutive columns", is one row of B (K / 4 rows, each 4 bytes of K for 16 output
// columns). One product covers one scale unit, the 32 columns that share one scale per weight row
// (a K-quant sub-block, a Q8_0 block): B is the unit's chunks (K-quants: unpacked from nibbles into
// bytes once per block for every tile), A is 16 tokens' activation bytes of those columns read in
// place (one activation row every act_stride bytes), and
// C[token][row] is the exact int32 dot product the VNNI kernel sums lane by lane with vpdpbusd.
// Everything after it (the units' scales, the mins and offsets, the float32 combination) is the
// VNNI kernel's arithmetic in the same order, so the two sets give every token the same bits
// whichever of them ran it; cpu_kernels_test checks that bit for bit.
#if defined(__x86_64__)
#if defined(__GNUC__) && !defined(__clang__)
// GCC bug 105593, as in kernels_avx512.cpp (here some of the intrinsics warn without the "maybe").
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "backend/cpu/kernels.h"
#include "backend/cpu/packed_weights.h"

// Everything below is compiled for AVX-512 and AMX (see x86_kernels.h for why the pragma comes last).
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,amx-tile,amx-int8"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,amx-tile,amx-int8")
#endif

#define REALIZAR_X86_KERNELS_TU
#include "backend/cpu/avx512_ops.h"

namespace realizar::cpu {
namespace {

constexpr int64_t kTileTokens = 16;  // the rows of an A tile

// The one tile configuration every kernel uses (palette 1): C in tmm0 and tmm1 (16 tokens x 16
// int32), a unit of 32 columns in tmm2 (A: 16 tokens x 32 bytes) and tmm3 (B: 8 rows of 64 bytes).
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t bytes_per_row[16] = {};
  uint8_t rows[16] = {};
};
static_assert(sizeof(TileConfig) == 64);

// Loads the configuration once per thread: it is part of the thread's state from then on (the OS
// saves it with the tile data on a context switch), and every kernel of this file uses the same one.
void configure_tiles() {
  thread_local bool configured = false;
  if (configured) return;
  TileConfig config;
  const auto tile = [&config](int t, int rows, int bytes) {
    config.rows[t] = static_cast<uint8_t>(rows);
    config.bytes_per_row[t] = static_cast<uint16_t>(bytes);
  };
  tile(0, 16, 64);
  tile(1, 16, 64);
  tile(2, 16, 32);
  tile(3, 8, 64);
  _tile_loadconfig(&config);
  configured = true;
}

using UnitResult = int32_t[kTileTokens][kGroupRows];

// c[m][n] = sum_k a_m[k] * w_n[k] over one unit of 32 columns: a_m the 32 signed activation
// bytes of token m at a + m * stride, w the unit's 8 chunks at b (unsigned bytes, or signed ones
// for Q8_0). kC (0 or 1) is the C tile: consecutive units alternate, so that one unit's product
// does not wait for the previous one's store.
//
// GCC's tile intrinsics paste the register number into their assembly text, so it cannot be a
// template parameter: one body per C tile, spelled by this macro.
#define REALIZAR_UNIT_PRODUCT(C) \
  _tile_zero(C);                 \
  _tile_loadd(2, a, stride);     \
  _tile_loadd(3, b, 64);         \
  if constexpr (kSignedWeights) { \
    _tile_dpbssd(C, 2, 3);       \
  } else {                       \
    _tile_dpbsud(C, 2, 3);       \
  }                              \
  _tile_stored(C, c, 64)

template <int kC, bool kSignedWeights = false>
void unit_product(const int8_t* a, size_t stride, const void* b, UnitResult& c) {
  static_assert(kC == 0 || kC == 1);
  if constexpr (kC == 0) {
    REALIZAR_UNIT_PRODUCT(0);
  } else {
    REALIZAR_UNIT_PRODUCT(1);
  }
}
#undef REALIZAR_UNIT_PRODUCT

// The products of kUnits consecutive units (unit u's activations at a + 32 * u, its B operand at
// b + 512 * u), all issued before any result is read: the vector code that reads the tile unit's
// stores then waits once per block instead of once per unit.
template <int kUnits>
void unit_products(const int8_t* a, size_t stride, const uint8_t* b, UnitResult (&c)[kUnits]) {
  static_assert(kUnits % 2 == 0);
  for (int u = 0; u < kUnits; u += 2) {
    unit_product<0>(a + 32 * u, stride, b + 512 * u, c[u]);
    unit_product<1>(a + 32 * (u + 1), stride, b + 512 * (u + 1), c[u + 1]);
  }
}

using Ops = Avx512Ops;  // the VNNI kernels' vector operations (avx512_ops.h)

template <typename Act>
const Act& act_block(const uint8_t* act, size_t stride, int m) {
  return *reinterpret_cast<const Act*>(act + static_cast<size_t>(m) * stride);
}

// ---- the kernels --------------------------------------------------------------------------------

// Q4_K / Q5_K: unit s = sub-block s, its chunks 8 * (s / 2) + c, low nibbles for even s and high
// for odd; then TileQ4Q5K's scales, mins and combination.
template <typename PackedType>
struct KQuant45 {
  using Packed = PackedType;
  struct Units {
    alignas(64) uint8_t chunk[8][8][64];
  };

  static void unpack(const Packed& p, Units& u) {
    for (int w = 0; w < 32; ++w) {
      const Ops::B bytes = Ops::load(p.qs[w]);
      Ops::B low = Ops::low_nibbles(bytes), high = Ops::high_nibbles(bytes);
      if constexpr (HasHighBits<Packed>) {
        low = Ops::or_bit4(low, p.qh[w][0]);
        high = Ops::or_bit4(high, p.qh[w][1]);
      }
      _mm512_store_si512(u.chunk[2 * (w / 8)][w % 8], low);
      _mm512_store_si512(u.chunk[2 * (w / 8) + 1][w % 8], high);
    }
  }

  static void tile(const Packed& p, const Units& u, const uint8_t* act, size_t stride, float* out) {
    const auto* qs = reinterpret_cast<const int8_t*>(act + offsetof(ActBlockK, qs));
    alignas(64) UnitResult c[8];
    unit_products<8>(qs, stride, &u.chunk[0][0][0], c);
    Ops::I scaled[kTileTokens];
    for (Ops::I& s : scaled) s = Ops::zero_i();
    for (int s = 0; s < 8; ++s) {
      const Ops::I sc = Ops::u8_to_i32(p.scales[s]);
      for (int m = 0; m < kTileTokens; ++m) scaled[m] = Ops::add(scaled[m], Ops::mullo(Ops::load(c[s][m]), sc));
    }
    Ops::I min_pairs[4];
    for (int pair = 0; pair < 4; ++pair) min_pairs[pair] = Ops::u8pairs_to_i16(&p.mins[pair][0][0]);
    const Ops::F d = Ops::half(p.d), dmin = Ops::half(p.dmin);
    for (int m = 0; m < kTileTokens; ++m) {
      const ActBlockK& a = act_block<ActBlockK>(act, stride, m);
      Ops::I mins = Ops::zero_i();
      for (int pair = 0; pair < 4; ++pair) mins = Ops::madd16(mins, min_pairs[pair], a.bsums32 + 2 * pair);
      const Ops::F da = Ops::set1(a.d);
      Ops::F acc = _mm512_loadu_ps(out + m * kGroupRows);
      acc = Ops::fma(Ops::cvt(scaled[m]), Ops::mul(d, da), acc);
      acc = Ops::fnma(Ops::cvt(mins), Ops::mul(dmin, da), acc);
      Ops::store(out + m * kGroupRows, acc);
    }
  }
};

// The tokens from `whole` on (fewer than 16) on the VNNI kernel of the same type (kIndex in
// kPackedTypes).
template <size_t kIndex>
void rest_on_vnni(const uint8_t* group, const uint8_t* act, size_t act_stride, int64_t tokens, int64_t whole,
                  int64_t blocks, float* out) {
  if (tokens == whole) return;
  avx512_kernels().gemm[kIndex](group, act + static_cast<size_t>(whole) * act_stride, act_stride, tokens - whole,
                                blocks, out + whole * kGroupRows);
}

// Q4_K / Q5_K GemmKernel: block by block, each block's units unpacked once for every whole tile
// of 16 tokens, out accumulating block by block in VNNI's order.
template <typename Packed, size_t kIndex>
void gemm_k_quant(const uint8_t* group, const uint8_t* act, size_t act_stride, int64_t tokens, int64_t blocks,
                  float* out) {
  const int64_t whole = tokens / kTileTokens * kTileTokens;
  if (whole > 0) {
    configure_tiles();
    std::fill_n(out, whole * kGroupRows, 0.0f);
    const auto* packed = reinterpret_cast<const Packed*>(group);
    typename KQuant45<Packed>::Units units;
    for (int64_t b = 0; b < blocks; ++b) {
      KQuant45<Packed>::unpack(packed[b], units);
      const uint8_t* block_act = act + static_cast<size_t>(b) * sizeof(ActBlockK);
      for (int64_t t0 = 0; t0 < whole; t0 += kTileTokens) {
        KQuant45<Packed>::tile(packed[b], units, block_act + static_cast<size_t>(t0) * act_stride, act_stride,
                               out + t0 * kGroupRows);
      }
    }
  }
  rest_on_vnni<kIndex>(group, act, act_stride, tokens, whole, blocks, out);
}

// Q8_0 GemmKernel: one unit per block, the packed chunks the signed B operand as they are, then
// Tile32's scale. Each tile of 16 tokens runs through every block with its accumulators in
// registers (a block is one unit: a load and store of them per block would cost as much as the
// product).
template <size_t kIndex>
void gemm_q8_0(const uint8_t* group, const uint8_t* act, size_t act_stride, int64_t tokens, int64_t blocks,
               float* out) {
  const int64_t whole = tokens / kTileTokens * kTileTokens;
  if (whole > 0) configure_tiles();
  const auto* packed = reinterpret_cast<const PackedQ8_0*>(group);
  for (int64_t t0 = 0; t0 < whole; t0 += kTileTokens) {
    Ops::F acc[kTileTokens];
    for (Ops::F& a : acc) a = Ops::zero_f();
    for (int64_t b = 0; b < blocks; ++b) {
      const uint8_t* tile_act = act + static_cast<size_t>(b) * sizeof(ActBlock32) + static_cast<size_t>(t0) * act_stride;
      alignas(64) UnitResult c;
      unit_product<0, true>(reinterpret_cast<const int8_t*>(tile_act + offsetof(ActBlock32, qs)), act_stride,
                            packed[b].qs, c);
      const Ops::F d = Ops::half(packed[b].d);
      for (int m = 0; m < kTileTokens; ++m) {
        const ActBlock32& a = act_block<ActBlock32>(tile_act, act_stride, m);
        acc[m] = Ops::fma(Ops::mul(Ops::cvt(Ops::load(c[m])), d), Ops::set1(a.d), acc[m]);
      }
    }
    for (int m = 0; m < kTileTokens; ++m) Ops::store(out + (t0 + m) * kGroupRows, acc[m]);
  }
  rest_on_vnni<kIndex>(group, act, act_stride, tokens, whole, blocks, out);
}

}  // namespace
}  // namespace realizar::cpu

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

namespace realizar::cpu {

// Portable code (the target ends above): called only once the CPU is known to run the set.
const KernelSet& amx_kernels() {
  static const KernelSet set = [] {
    KernelSet s = avx512_kernels();
    s.isa = Isa::Amx;
    // Q8_0, Q4_K and Q5_K on the tile unit; the other types keep the VNNI kernels, which were as
    // fast or faster at 64 tokens (docs/perf-notes.md, "AMX tiles for prefill").
    static_assert(kPackedTypes[4] == TensorType::Q8_0 && kPackedTypes[5] == TensorType::Q4_K &&
                  kPackedTypes[6] == TensorType::Q5_K);
    s.gemm[4] = gemm_q8_0<4>;
    s.gemm[5] = gemm_k_quant<PackedQ4_K, 5>;
    s.gemm[6] = gemm_k_quant<PackedQ5_K, 6>;
    return s;
  }();
  return set;
}

}  // namespace realizar::cpu
#endif  // __x86_64__
