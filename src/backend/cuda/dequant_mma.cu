// Matrix products of quantized weights with float16 activations on the tensor cores, for steps of
// 9-64 tokens (kernels.h, matmul_dequant_mma). Each lane reads its share of a weight block from
// global memory once per token tile of 32 tokens, turns it into float16 A fragments in registers
// (the block's scale and minimum applied per element: scale * q + offset, one rounding), and
// multiplies with mma.sync.m16n8k16.f32.f16.f16.f32 (PTX ISA, "Matrix Fragments for
// mma.m16n8k16"): the products accumulate in float32 across all of K, with no per-block work after
// the mma.
//
// Fragments (lane = 4 g + t): A (16 rows x 16 k) a0 = row g, k 2t, 2t+1; a1 = row g+8, same k;
// a2 = row g, k 2t+8, 2t+9; a3 = row g+8, same k. B (16 k x 8 tokens) b0 = token g, k 2t, 2t+1;
// b1 = token g, k 2t+8, 2t+9. C/D c0, c1 = row g, tokens 2t, 2t+1; c2, c3 = row g+8, same tokens.
// The order of k inside one mma is free as long as A and B agree. A k-step is 32 elements of a row
// (one K-quant sub-block, one block of the 32-element types) and two mma: lane t holds elements
// 8t..8t+7 of the step as two 4-byte words of integers q (the readers below), one scale and one
// offset, and product j takes word j: its elements 8t+4j .. 8t+4j+3 as k 2t, 2t+1, 2t+8, 2t+9. So
// its B values are elements 8t..8t+7 of the token's step: one 16-byte shared-memory read.
//
// Tiles: a warp computes 16 or 32 rows (one or two m16 tiles) x 32 tokens (four n8 tiles); a CTA
// is 4 such warps on consecutive rows, so each weight is turned into fragments once per 32
// tokens. The tile's activations come through a shared-memory ring of k-steps, filled by
// cp.async a half ring (4 k-steps) ahead (one __syncthreads per half), so the four warps share one copy and
// never wait on L2 inside a step. Weights go from global memory to registers once per unit (a
// block, or four blocks of the 32-element types); each lane asks L2 (cp.async.bulk.prefetch.L2)
// for its row's next 512 elements one window ahead, 16-row warps load the next unit's registers a
// whole unit ahead and 32-row warps (no registers for that) as soon as the current unit's last
// fragments are made, before that step's mma. K is split over a thread-block cluster of up to 8
// CTAs that add their sums through distributed shared memory in rank order (deterministic), so
// that small matrices still give every multiprocessor CTAs. Up to kMaxMatvecParts matrices of one
// type reading the same activations (Q, K, V; gate, up) share a launch, their row tiles laid end
// to end over the grid.
//
// History (docs/perf-notes.md): the first version multiplied int8 activations (m16n8k32.s8) and
// scaled every block's integer sum in float32 after each mma; Nsight Compute showed 48 issued
// instructions per mma (9.6 M float32 of 25.7 M for the 7B gate matrix at 32 tokens, 68 us at
// 630 GB/s), spills, and 38 % of issue slots used with ~3.5 warps per scheduler. Tiles of 32
// tokens lose to dequantize + cuBLAS from 128 tokens on (each tile makes the fragments again), and
// tiles of 128 tokens lost too, from ~96-192 tokens on, by up to 3x at 512: bound by the mma.sync
// issue rate and the in-register dequantization ("Steps of 65-512 tokens", "Second attempt"), so
// steps of more than 64 tokens go to dequantize + cuBLAS.
#include <cooperative_groups.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstring>
#include <utility>

#include "backend/cuda/async_copy.cuh"
#include "backend/cuda/block_access.cuh"
#include "backend/cuda/kernels.h"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/mma.cuh"
#include "realizar/quant_blocks.h"

namespace realizar::cuda {
namespace {

// The weights of one k-step for one row, as this lane holds them: two words of 4 bytes q (signed
// when the type's kSigned) for the lane's elements 8t..8t+3 (lo) and 8t+4..8t+7 (hi), each element
// scale * q + offset, with {scale, offset} the float16 pair `so` (low half scale).
struct StepA {
  uint32_t lo, hi, so;
};

// Reinterprets the bits of a float16 pair.
__device__ __forceinline__ __half2 as_half2(uint32_t bits) {
  __half2 h;
  memcpy(&h, &bits, sizeof h);
  return h;
}
__device__ __forceinline__ uint32_t as_bits(__half2 h) {
  uint32_t bits;
  memcpy(&bits, &h, sizeof bits);
  return bits;
}

constexpr uint32_t kExponent1024 = 0x64646464u;  // float16 exponent bytes of 1024 (ulp 1)

// {factors.lo * a, factors.hi * b} as float16 for the bytes a, b of `word` that `selector` (a
// __byte_perm selector of the form 0x4?4?) puts under the exponent of 1024: 1024 + a is exact,
// the subtraction of `zero` (1024, or 1152 for bytes stored as q + 128) is exact, and the product
// is rounded once, as the float product of the two rounded to float16 would be.
__device__ __forceinline__ uint32_t scaled_byte_pair(uint32_t word, uint32_t selector, uint32_t zero,
                                                     uint32_t factors) {
  const __half2 bytes = __hsub2(as_half2(__byte_perm(word, kExponent1024, selector)), as_half2(zero));
  return as_bits(__hmul2(bytes, as_half2(factors)));
}
constexpr uint32_t k1024Pair = 0x64006400u;
constexpr uint32_t k1152Pair = 0x64806480u;

// Unsigned bytes q in [0, 2 * bias) to the signed bytes q - bias (no carries between bytes:
// q + 128 - bias < 256; flipping bit 7 then subtracts 128).
__device__ __forceinline__ uint32_t minus_bias(uint32_t q, uint32_t bias) {
  return (q + (0x80808080u - bias * 0x01010101u)) ^ 0x80808080u;
}

// The float16 {d, 0} of the float16 at p (2-byte aligned): the zero-extended bits.
__device__ __forceinline__ uint32_t half_and_zero_at(const uint8_t* p) {
  return __ldg(reinterpret_cast<const uint16_t*>(p));
}

// Per-type readers. Each has kSteps k-steps per unit, kBlockElems / kBlockBytes per block,
// kSigned (whether its q bytes are signed), kPartialUnits (whether a row's last unit may hold fewer
// than kSteps steps), a Raw of one unit for one row as one lane holds it, load(row, unit, t, blocks)
// and step(raw, s) for s < kSteps.

// Q4_K (144-byte blocks, 16-byte aligned): unit = one block, 8 k-steps (sub-blocks). Element e of
// sub-block 2c + n is nibble n of qs[32c + e]; x = d * sc * q - dmin * m.
struct Q4K {
  static constexpr int kSteps = 8;
  static constexpr int kBlockElems = 256, kBlockBytes = sizeof(block_q4_K);
  static constexpr bool kSigned = false, kPartialUnits = false;
  struct Raw {
    uint2 q[4];
    uint32_t sm[4];    // 6-bit scale and min of sub-blocks 2i, 2i+1: bytes sc, m, sc, m
    uint32_t factors;  // float16 {d, -dmin}
  };
  // Sub-block k's scale and min side by side (KQuantHead), dmin negated.
  __device__ static void unpack_scales(const KQuantHead& h, Raw& r) {
#pragma unroll
    for (int c = 0; c < 4; ++c) r.sm[c] = h.scale_min_pair(c);
    r.factors = h.words.x ^ 0x80000000u;
  }
  __device__ static Raw load(const uint8_t* row, int64_t unit, int t, int64_t) {
    const uint8_t* blk = row + unit * sizeof(block_q4_K);
    Raw r;
    unpack_scales(KQuantHead::load(blk), r);
#pragma unroll
    for (int c = 0; c < 4; ++c) r.q[c] = __ldg(reinterpret_cast<const uint2*>(blk + 16 + 32 * c + 8 * t));
    return r;
  }
  __device__ static StepA step(const Raw& r, int s) {
    StepA a;
    a.lo = nibble_levels(r.q[s / 2].x, s % 2);
    a.hi = nibble_levels(r.q[s / 2].y, s % 2);
    a.so = scaled_byte_pair(r.sm[s / 2], s % 2 == 0 ? 0x4140u : 0x4342u, k1024Pair, r.factors);
    return a;
  }
};

// Q5_K (176 bytes): as Q4_K with bit 4 of element e of sub-block b at bit b of qh[e].
struct Q5K {
  static constexpr int kSteps = 8;
  static constexpr int kBlockElems = 256, kBlockBytes = sizeof(block_q5_K);
  static constexpr bool kSigned = false, kPartialUnits = false;
  struct Raw {
    Q4K::Raw low;
    uint2 qh;
  };
  __device__ static Raw load(const uint8_t* row, int64_t unit, int t, int64_t) {
    const uint8_t* blk = row + unit * sizeof(block_q5_K);
    Raw r;
    Q4K::unpack_scales(KQuantHead::load(blk), r.low);
    r.qh = __ldg(reinterpret_cast<const uint2*>(blk + 16 + 8 * t));
#pragma unroll
    for (int c = 0; c < 4; ++c) r.low.q[c] = __ldg(reinterpret_cast<const uint2*>(blk + 48 + 32 * c + 8 * t));
    return r;
  }
  __device__ static StepA step(const Raw& r, int s) {
    StepA a = Q4K::step(r.low, s);
    a.lo = q5_k_levels(r.low.q[s / 2].x, r.qh.x, s);
    a.hi = q5_k_levels(r.low.q[s / 2].y, r.qh.y, s);
    return a;
  }
};

// Q6_K (210 bytes, 2-byte aligned): unit = half h of a block (128 elements, 4 k-steps). Element i
// of quarter s (element 128h + 32s + i) has its low 4 bits in nibble s / 2 of ql[64h + 32(s % 2) + i]
// and bits 4-5 at bits 2s of qh[32h + i]; x = d * scales[8h + 2s + i / 16] * (q - 32). Lane t's
// elements i = 8t..8t+7 share the scale 8h + 2s + t / 2.
struct Q6K {
  static constexpr int kSteps = 4;
  static constexpr int kBlockElems = 256, kBlockBytes = sizeof(block_q6_K);
  static constexpr bool kSigned = true, kPartialUnits = false;
  struct Raw {
    uint32_t ql[2][2];  // [s % 2][lo, hi word]
    uint32_t qh[2];
    uint32_t scales;    // the lane's scale of step s in byte s, stored as scale + 128
    uint32_t factors;   // float16 {d, 0}
  };
  __device__ static Raw load(const uint8_t* row, int64_t unit, int t, int64_t) {
    const uint8_t* blk = row + (unit / 2) * sizeof(block_q6_K);
    const int h = static_cast<int>(unit % 2);
    Raw r;
#pragma unroll
    for (int p = 0; p < 2; ++p) load_words_2aligned<2>(blk + 64 * h + 32 * p + 8 * t, r.ql[p]);
    load_words_2aligned<2>(blk + 128 + 32 * h + 8 * t, r.qh);
    uint32_t scales[2];
    load_words_2aligned<2>(blk + 192 + 8 * h, scales);
    // Bytes t/2, 2 + t/2, 4 + t/2, 6 + t/2 of the half's 8 scales.
    r.scales = __byte_perm(scales[0], scales[1], 0x6420u + 0x1111u * static_cast<uint32_t>(t / 2)) ^ 0x80808080u;
    r.factors = half_and_zero_at(blk + 208);
    return r;
  }
  __device__ static StepA step(const Raw& r, int s) {
    StepA a;
    a.lo = minus_bias(q6_k_levels(r.ql[s % 2][0], r.qh[0], s), 32);
    a.hi = minus_bias(q6_k_levels(r.ql[s % 2][1], r.qh[1], s), 32);
    a.so = scaled_byte_pair(r.scales, 0x4040u + 0x0101u * static_cast<uint32_t>(s), k1152Pair, r.factors);
    return a;
  }
};

// The 32-element types: unit = 4 blocks (the last unit of a row may hold fewer). Lane t takes
// elements 8t..8t+7 of each block.
constexpr int kSmallSteps = 4;

// Q8_0 (34 bytes, 2-byte aligned): x = d * q.
struct Q80 {
  static constexpr int kSteps = kSmallSteps;
  static constexpr int kBlockElems = 32, kBlockBytes = sizeof(block_q8_0);
  static constexpr bool kSigned = true, kPartialUnits = true;
  struct Raw {
    uint32_t q[kSteps][2];
    uint32_t so[kSteps];  // float16 {d, 0}
  };
  __device__ static Raw load(const uint8_t* row, int64_t unit, int t, int64_t blocks) {
    Raw r;
#pragma unroll
    for (int s = 0; s < kSteps; ++s) {
      const int64_t b = min(unit * kSteps + s, blocks - 1);  // past the row's end: a repeat, unused
      const uint8_t* blk = row + b * sizeof(block_q8_0);
      load_words_2aligned<2>(blk + 2 + 8 * t, r.q[s]);
      r.so[s] = half_and_zero_at(blk);
    }
    return r;
  }
  __device__ static StepA step(const Raw& r, int s) { return StepA{r.q[s][0], r.q[s][1], r.so[s]}; }
};

// Q4_0 (x = d * (q - 8)), Q4_1 (x = d * q + m) and Q5_0 (x = d * (q - 16), bit 4 of element j
// at bit j of qh): element j < 16 in the low nibble of qs[j], j + 16 in the high one, so lane t
// reads qs[8 (t % 2) ..] and takes the nibbles 4 (t / 2) up.
template <uint32_t kType>
struct Small4 {
  static constexpr int kSteps = kSmallSteps;
  static constexpr bool kSigned = kType != kQ4_1, kPartialUnits = true;
  static constexpr int kBlockElems = 32;
  static constexpr int kBlockBytes = kType == kQ4_0 ? sizeof(block_q4_0)
                                     : kType == kQ4_1 ? sizeof(block_q4_1)
                                                      : sizeof(block_q5_0);
  struct Raw {
    uint32_t q[kSteps][2];
    uint32_t so[kSteps];  // float16 {d, m} (Q4_1) or {d, 0}
  };
  __device__ static Raw load(const uint8_t* row, int64_t unit, int t, int64_t blocks) {
    Raw r;
    const int n = t / 2;  // the lane's nibble
#pragma unroll
    for (int s = 0; s < kSteps; ++s) {
      const int64_t b = min(unit * kSteps + s, blocks - 1);
      const uint8_t* blk = row + b * kBlockBytes;
      uint32_t qs[2];
      if constexpr (kType == kQ4_1) {  // 4-byte aligned; d and m are the block's first word
        r.so[s] = __ldg(reinterpret_cast<const uint32_t*>(blk));
        qs[0] = __ldg(reinterpret_cast<const uint32_t*>(blk + 4 + 8 * (t % 2)));
        qs[1] = __ldg(reinterpret_cast<const uint32_t*>(blk + 8 + 8 * (t % 2)));
      } else {
        const int qs_at = kType == kQ5_0 ? 6 : 2;
        load_words_2aligned<2>(blk + qs_at + 8 * (t % 2), qs);
        r.so[s] = half_and_zero_at(blk);
      }
      if constexpr (kType == kQ5_0) {
        uint32_t qh;
        load_words_2aligned<1>(blk + 2, &qh);
        const uint32_t bits = qh >> (8 * t);
        r.q[s][0] = minus_bias(q5_0_levels(qs[0], n, bits), 16);
        r.q[s][1] = minus_bias(q5_0_levels(qs[1], n, bits >> 4), 16);
      } else {
#pragma unroll
        for (int k = 0; k < 2; ++k) r.q[s][k] = nibble_levels(qs[k], n);
        if constexpr (kType == kQ4_0) {
          r.q[s][0] = minus_bias(r.q[s][0], 8);
          r.q[s][1] = minus_bias(r.q[s][1], 8);
        }
      }
    }
    return r;
  }
  __device__ static StepA step(const Raw& r, int s) { return StepA{r.q[s][0], r.q[s][1], r.so[s]}; }
};

// The four bytes of `word` (a row's elements e..e+3; signed or unsigned integers q) as the float16
// pairs (e, e+1) -> first and (e+2, e+3) -> second of scale * q + offset ({scale, offset} = so).
// A byte u put under the exponent of the float16 1024 (whose unit in the last place is 1) gives
// exactly 1024 + u, so one subtraction recovers q exactly (signed bytes are first moved to
// u = q + 128); the scale and offset then cost one rounding.
template <bool kSigned>
__device__ __forceinline__ void bytes_to_half2(uint32_t word, uint32_t so, uint32_t& first, uint32_t& second) {
  const uint32_t u = kSigned ? word ^ 0x80808080u : word;
  const __half2 zero = as_half2(kSigned ? k1152Pair : k1024Pair);
  const __half2 pair = as_half2(so);
  const __half2 scale = __low2half2(pair), offset = __high2half2(pair);
  first = as_bits(__hfma2(__hsub2(as_half2(__byte_perm(u, kExponent1024, 0x4140u)), zero), scale, offset));
  second = as_bits(__hfma2(__hsub2(as_half2(__byte_perm(u, kExponent1024, 0x4342u)), zero), scale, offset));
}

constexpr int kRowWarps = 4;    // warps per CTA, each on its own rows
constexpr int kThreads = kRowWarps * 32;
constexpr int kMaxSplits = 8;   // portable cluster size

constexpr int kNTiles = 4;      // n8 tiles per warp: 32 tokens
constexpr int kMinCtas = 4;     // CTAs per multiprocessor (__launch_bounds__): 128 registers

// A CTA's token tile and its activation ring: kStages slots of one k-step (32 k) each, holding
// the float16 values of the tile's 32 tokens ([token][32]: 64 bytes per token, so that the
// 16-byte B reads of 8 lanes cover 128 contiguous bytes), 16 KiB, a step being 16 mma per warp.
// The ring is two halves of kHalfSteps steps: the warps read one while cp.async fills the other,
// with one __syncthreads per half (a barrier per step cost 3-6 % more at 32 tokens: docs/perf-notes.md,
// "Fewer barriers in the tensor-core product").
struct TokenTile {
  static constexpr int kTokens = 8 * kNTiles;
  static constexpr int kSlotBytes = kTokens * 32 * 2;
  static constexpr int kStages = 8;
  static constexpr int kHalfSteps = kStages / 2;
  static constexpr int kRingBytes = kStages * kSlotBytes;
  static constexpr int kCopies = kTokens * 4 / kThreads;  // 16-byte copies per thread and k-step
  static_assert((kStages & (kStages - 1)) == 0 && kCopies * kThreads == kTokens * 4, "ring layout");
};

// Shared memory of a CTA: the ring, and after the main loop in the same bytes the partial sums of
// a split K ([accumulator][thread] floats). At most 16 KiB: under the 48 KiB a launch may ask for
// without raising the kernel's limit.
template <int kMTiles>
constexpr size_t shared_bytes(int splits) {
  const size_t partial = splits > 1 ? size_t{kMTiles} * kNTiles * 4 * kThreads * sizeof(float) : 0;
  return std::max(static_cast<size_t>(TokenTile::kRingBytes), partial);
}
static_assert(shared_bytes<2>(kMaxSplits) <= 48 * 1024, "dynamic shared memory without cudaFuncSetAttribute");

// Elements of each row that a warp asks L2 to fetch ahead of its register loads.
constexpr int kPrefetchElems = 512;

// The matrices of one launch (kernels.h, matmul_dequant_mma_parts): row tiles of part i are
// blockIdx.z in [first_tile[i], first_tile[i + 1]).
struct MmaArgs {
  MatvecPart part[kMaxMatvecParts];
  unsigned first_tile[kMaxMatvecParts];
  int count;
  const __half* x;  // [tokens x cols]
  int64_t cols;
  bool accumulate;
  int64_t tokens;
};

// Asks L2 to fetch the 16-byte aligned part of [begin, end) (sm_90 bulk prefetch: no registers,
// no completion to wait for; the bytes outside are left to the demand loads).
__device__ __forceinline__ void prefetch_l2(const uint8_t* begin, const uint8_t* end) {
  const uintptr_t a = (reinterpret_cast<uintptr_t>(begin) + 15) & ~uintptr_t{15};
  const uintptr_t b = reinterpret_cast<uintptr_t>(end) & ~uintptr_t{15};
#if defined(__CUDA_ARCH__)
  if (b > a) {
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(a), "r"(static_cast<uint32_t>(b - a))
                 : "memory");
  }
#else
  (void)a, (void)b;
#endif
}

// Units [first, last) of one weight row, as the bytes of the blocks that hold them.
template <class Q>
__device__ __forceinline__ void prefetch_units(const uint8_t* row, size_t row_bytes, int64_t first, int64_t last) {
  constexpr int64_t kUnitElems = Q::kSteps * 32;
  const int64_t begin = first * kUnitElems / Q::kBlockElems * Q::kBlockBytes;
  const int64_t end = min(static_cast<int64_t>(row_bytes),
                          (last * kUnitElems + Q::kBlockElems - 1) / Q::kBlockElems * Q::kBlockBytes);
  if (end > begin) prefetch_l2(row + begin, row + end);
}

// y (+)= value (+ bias) for accumulator (m, n, e) of this lane: row first_row + 16 m + 8 (e / 2) + g,
// token first_token + 8 n + 2 t + e % 2; nothing outside the matrix or the tile.
struct Output {
  const MatvecPart& part;
  bool accumulate;
  int64_t first_row, first_token, tile_tokens;
  int g, t;
  __device__ void store(int m, int n, int e, float value) const {
    const int64_t r = first_row + 16 * m + 8 * (e / 2) + g;
    const int64_t token = 8 * n + 2 * t + e % 2;
    if (r >= part.w.rows || token >= tile_tokens) return;
    float* out = part.y + (first_token + token) * part.ldy + r;
    const float v = value + (part.bias != nullptr ? part.bias[r] : 0.0f);
    *out = accumulate ? *out + v : v;
  }
};

// The A fragments of one k-step (32 k) for one m tile: a[j] feeds the m16n8k16 product j, whose k
// are the lane's elements 4j..4j+3 of the step (see the top of the file). Rows g and g + 8.
template <class Q>
__device__ __forceinline__ void step_fragments(const typename Q::Raw (&raw)[2], int s, uint32_t (&a)[2][4]) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const StepA sa = Q::step(raw[h], s);
    bytes_to_half2<Q::kSigned>(sa.lo, sa.so, a[0][h], a[0][2 + h]);
    bytes_to_half2<Q::kSigned>(sa.hi, sa.so, a[1][h], a[1][2 + h]);
  }
}

// One CTA: kRowWarps warps of 16 kMTiles rows each (row tile blockIdx.z of its part) x the
// 32 tokens of token tile blockIdx.y, over units [u0, u1) of K: share blockIdx.x of
// gridDim.x, which is the cluster's size (the CTAs of one cluster split K and add their sums
// through distributed shared memory, in rank order). The tile's activations come through the
// shared ring, one half of it (kHalfSteps k-steps) ahead with cp.async; weights go from global memory (L2,
// prefetched ahead) to registers once per unit, ahead of their use (see the top of the file), and
// are turned into float16 fragments step by step.
template <class Q, int kMTiles>
__global__ void __launch_bounds__(kThreads, kMinCtas)
    matmul_dequant_mma_kernel(const __grid_constant__ MmaArgs args) {
  using Tile = TokenTile;
  constexpr int kWarpRows = 16 * kMTiles;
  constexpr int kAcc = kMTiles * kNTiles * 4;  // accumulators per lane
  constexpr bool kAhead = kMTiles == 1;
  constexpr int64_t kPrefetchUnits = kPrefetchElems / (Q::kSteps * 32);
  extern __shared__ __align__(16) uint8_t shared[];

  const int tid = static_cast<int>(threadIdx.x), warp = tid / 32, lane = tid % 32;
  const int g = lane / 4, t = lane % 4;
  int p = 0;
#pragma unroll
  for (int i = 1; i < kMaxMatvecParts; ++i) p = (i < args.count && blockIdx.z >= args.first_tile[i]) ? i : p;
  const MatvecPart& part = args.part[p];
  const DeviceMatrix& w = part.w;
  const int splits = static_cast<int>(gridDim.x), split = static_cast<int>(blockIdx.x);
  const int64_t first_row = (static_cast<int64_t>(blockIdx.z - args.first_tile[p]) * kRowWarps + warp) * kWarpRows;
  const int64_t first_token = static_cast<int64_t>(blockIdx.y) * Tile::kTokens;
  const int64_t tile_tokens = min(static_cast<int64_t>(Tile::kTokens), args.tokens - first_token);
  // n8 tiles computed: the tile's, rounded up to pairs (the loop goes by pairs; the extra tile
  // reads copies of the last token and is not stored).
  const int n_tiles = static_cast<int>((tile_tokens + 15) / 16 * 2);
  const int64_t blocks = args.cols / 32;
  const int64_t units = (blocks + Q::kSteps - 1) / Q::kSteps;
  const int64_t u0 = units * split / splits, u1 = units * (split + 1) / splits;
  const int steps = static_cast<int>(min(u1 * Q::kSteps, blocks) - u0 * Q::kSteps);

  // Step gs of this CTA (block u0 * kSteps + gs) into slot gs % kStages: copy c of this thread is
  // 16 bytes of token (tid + c kThreads) / 4 at byte 16 (tid + c kThreads) of the slot; tokens past
  // the tile repeat its last one (their results are not stored).
  int32_t copy_at[Tile::kCopies];
#pragma unroll
  for (int c = 0; c < Tile::kCopies; ++c) {
    const int at = tid + c * kThreads;
    copy_at[c] = static_cast<int32_t>(min(static_cast<int64_t>(at / 4), tile_tokens - 1) * args.cols + 8 * (at % 4));
  }
  const __half* copy_from = args.x + first_token * args.cols + u0 * Q::kSteps * 32;
  const auto issue = [&](int gs) {
    if (gs >= steps) return;
    uint8_t* slot = shared + (gs & (Tile::kStages - 1)) * Tile::kSlotBytes + 16 * tid;
    const __half* from = copy_from + gs * 32;
#pragma unroll
    for (int c = 0; c < Tile::kCopies; ++c) cp_async16(slot + 16 * kThreads * c, from + copy_at[c]);
  };

  // Rows g, g + 8 of each m tile; rows past the matrix read its last row (results unused).
  int row_of[kMTiles][2];
#pragma unroll
  for (int m = 0; m < kMTiles; ++m) {
#pragma unroll
    for (int h = 0; h < 2; ++h) row_of[m][h] = static_cast<int>(min(first_row + 16 * m + 8 * h + g, w.rows - 1));
  }
  // Lane l asks L2 for row l of the warp, one window of kPrefetchUnits ahead of the loads.
  const uint8_t* prefetch_row = w.data + min(first_row + lane % kWarpRows, w.rows - 1) * static_cast<int64_t>(w.row_bytes);
  const bool prefetches = lane < kWarpRows;
  if (prefetches) prefetch_units<Q>(prefetch_row, w.row_bytes, u0, min(u0 + 2 * kPrefetchUnits, u1));

  typename Q::Raw raw[kMTiles][2], next[kMTiles][2];
  const auto load_all = [&](typename Q::Raw (&into)[kMTiles][2], int64_t u) {
#pragma unroll
    for (int m = 0; m < kMTiles; ++m)
#pragma unroll
      for (int h = 0; h < 2; ++h) into[m][h] = Q::load(w.data + static_cast<int64_t>(row_of[m][h]) * w.row_bytes, u, t, blocks);
  };
  if (u0 < u1) {
    if constexpr (kAhead) {
      load_all(next, u0);
    } else {
      load_all(raw, u0);
    }
  }

  // The activations are written by the previous kernel of the stream: wait for it only now that
  // the first weights are on their way.
  wait_then_allow_next_kernel();
#pragma unroll 1
  for (int i = 0; i < Tile::kHalfSteps; ++i) issue(i);
  cp_async_commit();

  float acc[kMTiles][kNTiles][4];
#pragma unroll
  for (int m = 0; m < kMTiles; ++m)
#pragma unroll
    for (int n = 0; n < kNTiles; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[m][n][e] = 0.0f;

  const int b_at = g * 64 + 16 * t;  // this lane's B values in a slot: token g, elements 8t..8t+7
  int gs = 0;
  for (int64_t u = u0; u < u1; ++u) {
    if (prefetches && u > u0 && (u - u0) % kPrefetchUnits == 0) {
      prefetch_units<Q>(prefetch_row, w.row_bytes, u + kPrefetchUnits, min(u + 2 * kPrefetchUnits, u1));
    }
    if constexpr (kAhead) {
#pragma unroll
      for (int m = 0; m < kMTiles; ++m)
#pragma unroll
        for (int h = 0; h < 2; ++h) raw[m][h] = next[m][h];
      if (u + 1 < u1) load_all(next, u + 1);
    }
#pragma unroll
    for (int s = 0; s < Q::kSteps; ++s, ++gs) {
      if (Q::kPartialUnits && gs >= steps) break;  // only the small types' last unit
      if (gs % Tile::kHalfSteps == 0) {
        cp_async_wait<0>();
        __syncthreads();  // this half is in; every warp is done with the other, which now fills
#pragma unroll
        for (int i = 0; i < Tile::kHalfSteps; ++i) issue(gs + Tile::kHalfSteps + i);
        cp_async_commit();
      }
      const uint8_t* slot = shared + (gs & (Tile::kStages - 1)) * Tile::kSlotBytes + b_at;

      uint32_t a[kMTiles][2][4];
#pragma unroll
      for (int m = 0; m < kMTiles; ++m) step_fragments<Q>(raw[m], s, a[m]);
      // The unit's registers are free after its last fragments: the next unit's loads overlap
      // this step's mma.
      if (!kAhead && s == Q::kSteps - 1 && u + 1 < u1) load_all(raw, u + 1);
      // Pairs of n8 tiles, products j = 0 of both before j = 1: four (two) independent mma
      // between two on the same accumulators.
#pragma unroll
      for (int n = 0; n < kNTiles; n += 2) {
        if (n >= n_tiles) break;
        const uint4 v[2] = {*reinterpret_cast<const uint4*>(slot + n * 8 * 64),
                            *reinterpret_cast<const uint4*>(slot + (n + 1) * 8 * 64)};
#pragma unroll
        for (int m = 0; m < kMTiles; ++m) {
          mma_f16(acc[m][n], a[m][0], v[0].x, v[0].y);
          mma_f16(acc[m][n + 1], a[m][0], v[1].x, v[1].y);
        }
#pragma unroll
        for (int m = 0; m < kMTiles; ++m) {
          mma_f16(acc[m][n], a[m][1], v[0].z, v[0].w);
          mma_f16(acc[m][n + 1], a[m][1], v[1].z, v[1].w);
        }
      }
    }
  }

  const Output out{part, args.accumulate, first_row, first_token, tile_tokens, g, t};
  if (splits == 1) {
#pragma unroll
    for (int m = 0; m < kMTiles; ++m)
#pragma unroll
      for (int n = 0; n < kNTiles; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) out.store(m, n, e, acc[m][n][e]);
    return;
  }
  // Each CTA of the cluster publishes its sums in its ring's bytes (once no copy is in flight and
  // every warp is done with the ring); CTA q then adds accumulators i = q (mod splits) of all CTAs
  // in rank order and stores them; the second barrier keeps every CTA's shared memory alive until
  // the others have read it.
  cp_async_wait<0>();
  __syncthreads();
  float* partial = reinterpret_cast<float*>(shared);  // [kAcc][kThreads]
#pragma unroll
  for (int m = 0; m < kMTiles; ++m)
#pragma unroll
    for (int n = 0; n < kNTiles; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) partial[((m * kNTiles + n) * 4 + e) * kThreads + tid] = acc[m][n][e];
  namespace cg = cooperative_groups;
  const cg::cluster_group cluster = cg::this_cluster();
  cluster.sync();
  const int rank = static_cast<int>(cluster.block_rank());
  for (int i = rank; i < kAcc; i += splits) {
    float sum = 0.0f;
    for (int q = 0; q < splits; ++q) sum += *cluster.map_shared_rank(&partial[i * kThreads + tid], q);
    out.store(i / (kNTiles * 4), i / 4 % kNTiles, i % 4, sum);
  }
  cluster.sync();
}

template <class F>
bool with_mma_type(uint32_t type, F&& f) {
  switch (type) {
    case kQ4_0: f(Small4<kQ4_0>{}); return true;
    case kQ4_1: f(Small4<kQ4_1>{}); return true;
    case kQ5_0: f(Small4<kQ5_0>{}); return true;
    case kQ8_0: f(Q80{}); return true;
    case kQ4_K: f(Q4K{}); return true;
    case kQ5_K: f(Q5K{}); return true;
    case kQ6_K: f(Q6K{}); return true;
    default: return false;
  }
}

int multiprocessor_count() {
  static const int count = [] {
    int device = 0, n = 0;
    if (cudaGetDevice(&device) != cudaSuccess ||
        cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device) != cudaSuccess) {
      return 132;
    }
    return n;
  }();
  return count;
}

template <class Q, int kMTiles>
void launch_mma(const MmaArgs& args, unsigned row_tiles, int splits, cudaStream_t stream) {
  constexpr int64_t kTileTokens = TokenTile::kTokens;
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(static_cast<unsigned>(splits), static_cast<unsigned>((args.tokens + kTileTokens - 1) / kTileTokens),
                        row_tiles);
  config.blockDim = dim3(kThreads);
  config.dynamicSmemBytes = shared_bytes<kMTiles>(splits);
  config.stream = stream;
  cudaLaunchAttribute attributes[2] = {};
  attributes[0].id = cudaLaunchAttributeClusterDimension;
  attributes[0].val.clusterDim.x = static_cast<unsigned>(splits);
  attributes[0].val.clusterDim.y = 1;
  attributes[0].val.clusterDim.z = 1;
  attributes[1].id = cudaLaunchAttributeProgrammaticStreamSerialization;  // launch.cuh
  attributes[1].val.programmaticStreamSerializationAllowed = 1;
  config.attrs = attributes;
  config.numAttrs = 2;
  check_launch(cudaLaunchKernelEx(&config, matmul_dequant_mma_kernel<Q, kMTiles>, args),
               "matmul_dequant_mma_kernel");
}

// The kernel for the shape's warp rows (kernels.h lists the ones there are).
template <class Q>
void launch_shape(const MmaArgs& args, unsigned row_tiles, const MmaShape& shape, cudaStream_t stream) {
  switch (shape.warp_rows) {
    case 16: return launch_mma<Q, 1>(args, row_tiles, shape.splits, stream);
    case 32: return launch_mma<Q, 2>(args, row_tiles, shape.splits, stream);
    default: unhandled_case("matmul_dequant_mma", "warp_rows", shape.warp_rows);
  }
}

}  // namespace

// K is split over the most CTAs of a cluster that still fit in one wave of four CTAs per
// multiprocessor (at most one split per 256 elements of K). Warps of 32 rows (each B fragment used
// twice) when that gives at least half a wave; else warps of 16 rows, twice the CTAs, with weights
// loaded a unit ahead (H200: 7B q/o and down at 32 tokens, the 0.5B FFN).
MmaShape matmul_dequant_mma_shape(int64_t rows, int64_t cols, int64_t tokens) {
  const int64_t slots = int64_t{kMinCtas} * multiprocessor_count();
  const auto fit = [&](int warp_rows) {
    MmaShape shape{warp_rows, 1};
    const int64_t row_tiles = (rows + kRowWarps * warp_rows - 1) / (kRowWarps * warp_rows);
    const int64_t ctas = row_tiles * ((tokens + TokenTile::kTokens - 1) / TokenTile::kTokens);
    for (const int splits : {2, 3, 4, 6, 8}) {
      if (ctas * splits > slots || splits > cols / 256) break;
      shape.splits = splits;
    }
    return std::make_pair(shape, ctas * shape.splits);
  };
  const auto wide = fit(32);
  return 2 * wide.second >= slots ? wide.first : fit(16).first;
}

void matmul_dequant_mma_tiled(const MatvecPart* parts, int count, const void* x, bool accumulate, int64_t tokens,
                              MmaShape shape, cudaStream_t stream) {
  if (count < 1 || count > kMaxMatvecParts) unhandled_case("matmul_dequant_mma", "part count", count);
  if (tokens < 1) unhandled_case("matmul_dequant_mma", "token count", tokens);
  for (int i = 0; i < count; ++i) {
    if (parts[i].output != PartOutput::Rows) {
      unhandled_case("matmul_dequant_mma", "part output", static_cast<int>(parts[i].output));
    }
  }
  if (shape.warp_rows != 16 && shape.warp_rows != 32) unhandled_case("matmul_dequant_mma", "warp_rows", shape.warp_rows);
  if (shape.splits < 1 || shape.splits > kMaxSplits) unhandled_case("matmul_dequant_mma", "splits", shape.splits);
  const DeviceMatrix& w0 = parts[0].w;
  MmaArgs args{};
  args.count = count;
  args.x = static_cast<const __half*>(x);
  args.cols = w0.cols;
  args.accumulate = accumulate;
  unsigned row_tiles = 0;
  const int64_t tile_rows = int64_t{kRowWarps} * shape.warp_rows;
  for (int i = 0; i < count; ++i) {
    if (parts[i].w.type != w0.type) unhandled_case("matmul_dequant_mma", "mixed weight types, part", i);
    if (parts[i].w.cols != w0.cols) unhandled_case("matmul_dequant_mma", "mixed widths, part", i);
    args.part[i] = parts[i];
    args.first_tile[i] = row_tiles;
    row_tiles += static_cast<unsigned>((parts[i].w.rows + tile_rows - 1) / tile_rows);
  }
  if (row_tiles == 0 || w0.cols <= 0) return;
  // Token tiles go over gridDim.y (at most 65535 per launch).
  const int64_t chunk = int64_t{65535} * TokenTile::kTokens;
  const bool known = with_mma_type(w0.type, [&](auto q) {
    for (int64_t t0 = 0; t0 < tokens; t0 += chunk) {
      MmaArgs pass = args;
      pass.tokens = std::min(chunk, tokens - t0);
      pass.x = args.x + t0 * w0.cols;
      for (int i = 0; i < count; ++i) pass.part[i].y = parts[i].y + t0 * parts[i].ldy;
      launch_shape<decltype(q)>(pass, row_tiles, shape, stream);
    }
  });
  if (!known) unhandled_case("matmul_dequant_mma", "weight type", w0.type);
}

void matmul_dequant_mma_parts(const MatvecPart* parts, int count, const void* x, bool accumulate, int64_t tokens,
                              cudaStream_t stream) {
  if (count < 1 || count > kMaxMatvecParts) unhandled_case("matmul_dequant_mma", "part count", count);
  int64_t rows = 0;
  for (int i = 0; i < count; ++i) rows += parts[i].w.rows;
  matmul_dequant_mma_tiled(parts, count, x, accumulate, tokens, matmul_dequant_mma_shape(rows, parts[0].w.cols, tokens),
                           stream);
}

void matmul_dequant_mma(const DeviceMatrix& w, const void* x, float* y, int64_t ldy, const float* bias, bool accumulate,
                        int64_t tokens, cudaStream_t stream) {
  const MatvecPart part{w, y, ldy, bias};
  matmul_dequant_mma_parts(&part, 1, x, accumulate, tokens, stream);
}

}  // namespace realizar::cuda
