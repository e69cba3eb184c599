// Matrix products of quantized weights with float16 activations on the tensor cores, for batches
// of 9-64 tokens (kernels.h, matmul_dequant_mma). Each lane reads its share of a weight block
// from global memory once per 32 tokens, turns it into float16 A fragments in registers (the
// block's scale and minimum applied per element: scale * q + offset, one rounding), and multiplies
// with mma.sync.m16n8k16.f32.f16.f16.f32 (PTX ISA, "Matrix Fragments for mma.m16n8k16"): the
// products accumulate in float32 across all of K, with no per-block work after the mma.
//
// Fragments (lane = 4 g + t): A (16 rows x 16 k) a0 = row g, k 2t, 2t+1; a1 = row g+8, same k;
// a2 = row g, k 2t+8, 2t+9; a3 = row g+8, same k. B (16 k x 8 tokens) b0 = token g, k 2t, 2t+1;
// b1 = token g, k 2t+8, 2t+9. C/D c0, c1 = row g, tokens 2t, 2t+1; c2, c3 = row g+8, same tokens.
// The order of k inside one mma is free as long as A and B agree. A k-step is one 32-element
// block (K-quant sub-block) and two mma: lane t holds 8 of its elements as two 4-byte words (the
// readers below, shared with the layout of matvec_int8), and product j takes word j: its elements
// e..e+3 as k 2t, 2t+1, 2t+8, 2t+9. For all types but Q6_K the lane's elements are 8t..8t+7, so
// its B values are one 16-byte shared-memory read; Q6_K's are 4t..4t+3 and 16+4t..16+4t+3 (its
// two 16-element scale groups), two 8-byte reads.
//
// Tiles: a warp computes 16 or 32 rows (one or two m16 tiles) x 32 tokens (four n8 tiles); a CTA
// is 4 such warps on consecutive rows. Its 32 tokens' activations come through a shared-memory
// ring of kStages k-steps, filled by cp.async kStages - 1 steps ahead (one __syncthreads per
// k-step), so the four warps share one copy and never wait on L2 inside a step. Weights go from
// global memory to registers once per unit (each byte once per 32 tokens); each lane asks L2
// (cp.async.bulk.prefetch.L2) for its row's next 512 elements one window ahead, and 16-row warps
// also load the next unit's registers before the current one's mma. K is split over a
// thread-block cluster of up to 8 CTAs that add their sums through distributed shared memory in
// rank order (deterministic), so that small matrices still give every multiprocessor CTAs.
//
// History (docs/perf-notes.md): the first version multiplied int8 activations (m16n8k32.s8) and
// scaled every block's integer sum in float32 after each mma; Nsight Compute showed 48 issued
// instructions per mma (9.6 M float32 of 25.7 M for the 7B gate matrix at 32 tokens, 68 us at
// 630 GB/s), spills, and 38 % of issue slots used with ~3.5 warps per scheduler.
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

// The mma accumulators start at the bits of the float 1.5 * 2^23: adding an integer v with
// |v| < 2^22 to them gives the bits of the float 1.5 * 2^23 + v exactly, so one float subtraction
// converts the sum (at most 32 * 127 * 127 in magnitude here) instead of a quarter-rate I2F.
constexpr int kBiasBits = 0x4B400000;
constexpr float kBias = 12582912.0f;

__device__ __forceinline__ float unbias(int bits) { return __int_as_float(bits) - kBias; }

// Byte k of `word` as a float: unsigned, or sign-extended when `is_signed`.
__device__ __forceinline__ float byte_to_float(uint32_t word, int k, bool is_signed) {
  const int value = is_signed ? static_cast<int>(word << (24 - 8 * k)) >> 24
                              : static_cast<int>(__byte_perm(word, 0u, 0x4440u | static_cast<uint32_t>(k)));
  return unbias(kBiasBits + value);
}

__device__ __forceinline__ float half_lo(uint32_t w) {
  return __half2float(__ushort_as_half(static_cast<uint16_t>(w & 0xFFFFu)));
}
__device__ __forceinline__ float half_hi(uint32_t w) {
  return __half2float(__ushort_as_half(static_cast<uint16_t>(w >> 16)));
}

// Unsigned bytes q in [0, 2 * bias) to the signed bytes q - bias (no carries between bytes:
// q + 128 - bias < 256; flipping bit 7 then subtracts 128).
__device__ __forceinline__ uint32_t minus_bias(uint32_t q, uint32_t bias) {
  return (q + (0x80808080u - bias * 0x01010101u)) ^ 0x80808080u;
}

// The weights of one k-step for one row, as this lane holds them: two words of 4 bytes q (signed
// when the type's kSigned) for the lane's elements (see the top of the file), each element
// scale * q + offset; for Q6_K `scale` applies to lo, `scale_hi` to hi.
struct StepA {
  uint32_t lo, hi;
  float scale, offset, scale_hi;
};

// Q4_K (144-byte blocks, 16-byte aligned): unit = one block, 8 k-steps (sub-blocks). Element e of
// sub-block 2c + n is nibble n of qs[32c + e]; x = d * sc * q - dmin * m.
struct Q4K {
  static constexpr int kSteps = 8;
  static constexpr int kBlockElems = 256, kBlockBytes = sizeof(block_q4_K);
  static constexpr bool kContiguous = true, kHalves = false, kSigned = false;
  struct Raw {
    uint2 q[4];
    uint32_t sc[2], mn[2];  // 6-bit scales and mins of sub-blocks 0-3 and 4-7, one per byte
    float d, dmin;
  };
  // The 12 packed scale bytes (q[0..11] = h.y, h.z, h.w) unpacked as unpack_scale_min_k4 does,
  // four sub-blocks per word.
  __device__ static void unpack_scales(const uint4& h, Raw& r) {
    r.d = half_lo(h.x);
    r.dmin = half_hi(h.x);
    r.sc[0] = h.y & 0x3F3F3F3Fu;
    r.sc[1] = (h.w & 0x0F0F0F0Fu) | ((h.y >> 2) & 0x30303030u);
    r.mn[0] = h.z & 0x3F3F3F3Fu;
    r.mn[1] = ((h.w >> 4) & 0x0F0F0F0Fu) | ((h.z >> 2) & 0x30303030u);
  }
  __device__ static Raw load(const uint8_t* row, int64_t unit, int t) {
    const uint8_t* blk = row + unit * sizeof(block_q4_K);
    Raw r;
    unpack_scales(__ldg(reinterpret_cast<const uint4*>(blk)), r);
#pragma unroll
    for (int c = 0; c < 4; ++c) r.q[c] = __ldg(reinterpret_cast<const uint2*>(blk + 16 + 32 * c + 8 * t));
    return r;
  }
  __device__ static StepA step(const Raw& r, int s) {
    const int shift = 4 * (s % 2);
    StepA a;
    a.lo = (r.q[s / 2].x >> shift) & kLowNibbles;
    a.hi = (r.q[s / 2].y >> shift) & kLowNibbles;
    a.scale = r.d * byte_to_float(r.sc[s / 4], s % 4, false);
    a.offset = -r.dmin * byte_to_float(r.mn[s / 4], s % 4, false);
    return a;
  }
};

// Q5_K (176 bytes): as Q4_K with bit 4 of element e of sub-block b at bit b of qh[e].
struct Q5K {
  static constexpr int kSteps = 8;
  static constexpr int kBlockElems = 256, kBlockBytes = sizeof(block_q5_K);
  static constexpr bool kContiguous = true, kHalves = false, kSigned = false;
  struct Raw {
    Q4K::Raw low;
    uint2 qh;
  };
  __device__ static Raw load(const uint8_t* row, int64_t unit, int t) {
    const uint8_t* blk = row + unit * sizeof(block_q5_K);
    Raw r;
    Q4K::unpack_scales(__ldg(reinterpret_cast<const uint4*>(blk)), r.low);
    r.qh = __ldg(reinterpret_cast<const uint2*>(blk + 16 + 8 * t));
#pragma unroll
    for (int c = 0; c < 4; ++c) r.low.q[c] = __ldg(reinterpret_cast<const uint2*>(blk + 48 + 32 * c + 8 * t));
    return r;
  }
  __device__ static StepA step(const Raw& r, int s) {
    StepA a = Q4K::step(r.low, s);
    a.lo |= ((r.qh.x >> s) & 0x01010101u) << 4;
    a.hi |= ((r.qh.y >> s) & 0x01010101u) << 4;
    return a;
  }
};

// Q6_K (210 bytes, 2-byte aligned): unit = half h of a block (128 elements, 4 k-steps). Element i
// of quarter s (element 128h + 32s + i) has its low 4 bits in nibble s / 2 of ql[64h + 32(s % 2) + i]
// and bits 4-5 at bits 2s of qh[32h + i]; x = d * scales[8h + 2s + i / 16] * (q - 32). PTX k order:
// lane t holds i = 4t..4t+3 (scale group 2s) and 16+4t.. (group 2s + 1).
struct Q6K {
  static constexpr int kSteps = 4;
  static constexpr int kBlockElems = 256, kBlockBytes = sizeof(block_q6_K);
  static constexpr bool kContiguous = false, kHalves = true, kSigned = true;
  struct Raw {
    uint32_t ql[2][2];  // [s % 2][i / 16]
    uint32_t qh[2];     // [i / 16]
    uint32_t scales[2];  // the half's 8 int8 scales
    float d;
  };
  __device__ static Raw load(const uint8_t* row, int64_t unit, int t) {
    const uint8_t* blk = row + (unit / 2) * sizeof(block_q6_K);
    const int h = static_cast<int>(unit % 2);
    Raw r;
#pragma unroll
    for (int p = 0; p < 2; ++p) {
      load_words_2aligned<1>(blk + 64 * h + 32 * p + 4 * t, &r.ql[p][0]);
      load_words_2aligned<1>(blk + 64 * h + 32 * p + 16 + 4 * t, &r.ql[p][1]);
    }
    load_words_2aligned<1>(blk + 128 + 32 * h + 4 * t, &r.qh[0]);
    load_words_2aligned<1>(blk + 128 + 32 * h + 16 + 4 * t, &r.qh[1]);
    load_words_2aligned<2>(blk + 192 + 8 * h, r.scales);
    r.d = half_at(blk + 208);
    return r;
  }
  __device__ static StepA step(const Raw& r, int s) {
    const int shift = 4 * (s / 2);
    StepA a;
    a.lo = minus_bias(((r.ql[s % 2][0] >> shift) & kLowNibbles) | (((r.qh[0] >> (2 * s)) & 0x03030303u) << 4), 32);
    a.hi = minus_bias(((r.ql[s % 2][1] >> shift) & kLowNibbles) | (((r.qh[1] >> (2 * s)) & 0x03030303u) << 4), 32);
    a.scale = r.d * byte_to_float(r.scales[s / 2], 2 * (s % 2), true);
    a.scale_hi = r.d * byte_to_float(r.scales[s / 2], 2 * (s % 2) + 1, true);
    a.offset = 0.0f;
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
  static constexpr bool kContiguous = true, kHalves = false, kSigned = true;
  struct Raw {
    uint32_t q[kSteps][2];
    float d[kSteps];
  };
  __device__ static Raw load(const uint8_t* row, int64_t unit, int t, int64_t blocks) {
    Raw r;
#pragma unroll
    for (int s = 0; s < kSteps; ++s) {
      const int64_t b = min(unit * kSteps + s, blocks - 1);  // past the row's end: a repeat, unused
      const uint8_t* blk = row + b * sizeof(block_q8_0);
      load_words_2aligned<2>(blk + 2 + 8 * t, r.q[s]);
      r.d[s] = half_at(blk);
    }
    return r;
  }
  __device__ static StepA step(const Raw& r, int s) {
    return StepA{r.q[s][0], r.q[s][1], r.d[s], 0.0f, 0.0f};
  }
};

// Q4_0 (x = d * (q - 8)), Q4_1 (x = d * q + m) and Q5_0 (x = d * (q - 16), bit 4 of element j
// at bit j of qh): element j < 16 in the low nibble of qs[j], j + 16 in the high one, so lane t
// reads qs[8 (t % 2) ..] and takes the nibbles 4 (t / 2) up.
template <uint32_t kType>
struct Small4 {
  static constexpr int kSteps = kSmallSteps;
  static constexpr bool kContiguous = true, kHalves = false, kSigned = kType != kQ4_1;
  static constexpr int kBlockElems = 32;
  static constexpr int kBlockBytes = kType == kQ4_0 ? sizeof(block_q4_0)
                                     : kType == kQ4_1 ? sizeof(block_q4_1)
                                                      : sizeof(block_q5_0);
  struct Raw {
    uint32_t q[kSteps][2];
    float d[kSteps], m[kSteps];
  };
  __device__ static Raw load(const uint8_t* row, int64_t unit, int t, int64_t blocks) {
    Raw r;
    const int shift = 4 * (t / 2);
#pragma unroll
    for (int s = 0; s < kSteps; ++s) {
      const int64_t b = min(unit * kSteps + s, blocks - 1);
      const uint8_t* blk = row + b * kBlockBytes;
      uint32_t qs[2];
      if constexpr (kType == kQ4_1) {  // 4-byte aligned
        const uint32_t dm = __ldg(reinterpret_cast<const uint32_t*>(blk));
        qs[0] = __ldg(reinterpret_cast<const uint32_t*>(blk + 4 + 8 * (t % 2)));
        qs[1] = __ldg(reinterpret_cast<const uint32_t*>(blk + 8 + 8 * (t % 2)));
        r.d[s] = half_lo(dm);
        r.m[s] = half_hi(dm);
      } else {
        const int qs_at = kType == kQ5_0 ? 6 : 2;
        load_words_2aligned<2>(blk + qs_at + 8 * (t % 2), qs);
        r.d[s] = half_at(blk);
        r.m[s] = 0.0f;
      }
#pragma unroll
      for (int k = 0; k < 2; ++k) r.q[s][k] = (qs[k] >> shift) & kLowNibbles;
      if constexpr (kType == kQ5_0) {
        uint32_t qh;
        load_words_2aligned<1>(blk + 2, &qh);
        const uint32_t bits = qh >> (8 * t);
        r.q[s][0] = minus_bias(r.q[s][0] | spread_bit4(bits & 0xFu), 16);
        r.q[s][1] = minus_bias(r.q[s][1] | spread_bit4((bits >> 4) & 0xFu), 16);
      } else if constexpr (kType == kQ4_0) {
        r.q[s][0] = minus_bias(r.q[s][0], 8);
        r.q[s][1] = minus_bias(r.q[s][1], 8);
      }
    }
    return r;
  }
  __device__ static StepA step(const Raw& r, int s) {
    return StepA{r.q[s][0], r.q[s][1], r.d[s], r.m[s], 0.0f};
  }
};

// K-quant units never pass the row's end; the small types' loaders clamp to it.
template <class Q>
__device__ __forceinline__ typename Q::Raw load_unit(const uint8_t* row, int64_t unit, int t, int64_t blocks) {
  if constexpr (Q::kSteps == kSmallSteps && !Q::kHalves) {
    return Q::load(row, unit, t, blocks);
  } else {
    return Q::load(row, unit, t);
  }
}

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

// The four bytes of `word` (a row's elements e..e+3; signed or unsigned integers q) as the float16
// pairs (e, e+1) -> first and (e+2, e+3) -> second of scale * q + offset. A byte u put under the
// exponent of the float16 1024 (whose unit in the last place is 1) gives exactly 1024 + u, so one
// subtraction recovers q exactly (signed bytes are first moved to u = q + 128); the scale and
// offset then cost one rounding.
template <bool kSigned>
__device__ __forceinline__ void bytes_to_half2(uint32_t word, __half2 scale, __half2 offset, uint32_t& first,
                                               uint32_t& second) {
  constexpr uint32_t kExponent1024 = 0x64646464u;
  const uint32_t u = kSigned ? word ^ 0x80808080u : word;
  const __half2 zero = as_half2(kSigned ? 0x64806480u : 0x64006400u);  // 1152 or 1024
  first = as_bits(__hfma2(__hsub2(as_half2(__byte_perm(u, kExponent1024, 0x4140u)), zero), scale, offset));
  second = as_bits(__hfma2(__hsub2(as_half2(__byte_perm(u, kExponent1024, 0x4342u)), zero), scale, offset));
}

constexpr int kRowWarps = 4;    // warps per CTA, each on its own rows
constexpr int kThreads = kRowWarps * 32;
constexpr int kNTiles = 4;      // n8 tiles per warp: 32 tokens
constexpr int kTileTokens = 8 * kNTiles;
constexpr int kMaxSplits = 8;   // portable cluster size

// The activation ring: kStages slots of one k-step (32 k) each, holding the float16 values of the
// tile's 32 tokens ([token][32]: 64 bytes per token, so that the 16-byte B reads of 8 lanes cover
// 128 contiguous bytes).
constexpr int kStages = 8;
constexpr int kSlotBytes = kTileTokens * 32 * 2;

// Elements of each row that a warp asks L2 to fetch ahead of its register loads.
constexpr int kPrefetchElems = 512;

struct MmaArgs {
  DeviceMatrix w;
  const __half* x;
  float* y;
  int64_t ldy;
  const float* bias;
  bool accumulate;
  int64_t tokens;
};

// Asks L2 to fetch the 16-byte aligned part of [begin, end) (sm_90 bulk prefetch: no registers,
// no completion to wait for; the bytes outside are left to the demand loads).
__device__ __forceinline__ void prefetch_l2(const uint8_t* begin, const uint8_t* end) {
  const uintptr_t a = (reinterpret_cast<uintptr_t>(begin) + 15) & ~uintptr_t{15};
  const uintptr_t b = reinterpret_cast<uintptr_t>(end) & ~uintptr_t{15};
  if (b > a) {
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(a), "r"(static_cast<uint32_t>(b - a))
                 : "memory");
  }
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

// y (+)= sum over q < splits of partial q: CTA q of the cluster adds the same rows and tokens over
// its own share of K. Accumulator i = (m * kNTiles + n) * 4 + e of this lane.
template <int kMTiles>
struct Output {
  const MmaArgs& args;
  int64_t first_row, tile_tokens;
  int g, t;
  __device__ void store(int i, float value) const {
    const int m = i / (kNTiles * 4), n = i / 4 % kNTiles, e = i % 4;
    const int64_t r = first_row + 16 * m + 8 * (e / 2) + g;
    const int64_t token = 8 * n + 2 * t + e % 2;
    if (m >= kMTiles || r >= args.w.rows || token >= tile_tokens) return;
    float* out = args.y + (static_cast<int64_t>(blockIdx.y) * kTileTokens + token) * args.ldy + r;
    const float v = value + (args.bias != nullptr ? args.bias[r] : 0.0f);
    *out = args.accumulate ? *out + v : v;
  }
};

// The A fragments of one k-step (32 k) for m tile m: a[j] feeds the m16n8k16 product j, whose k
// are the lane's elements 4j..4j+3 of the step (see the top of the file). Rows g and g + 8.
template <class Q>
__device__ __forceinline__ void step_fragments(const typename Q::Raw (&raw)[2], int s, uint32_t (&a)[2][4]) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const StepA sa = Q::step(raw[h], s);
    const __half2 scale = __float2half2_rn(sa.scale), offset = __float2half2_rn(sa.offset);
    const __half2 scale_hi = Q::kHalves ? __float2half2_rn(sa.scale_hi) : scale;
    bytes_to_half2<Q::kSigned>(sa.lo, scale, offset, a[0][h], a[0][2 + h]);
    bytes_to_half2<Q::kSigned>(sa.hi, scale_hi, offset, a[1][h], a[1][2 + h]);
  }
}

// One CTA: kRowWarps warps of 16 kMTiles rows each (rows blockIdx.z * 16 kMTiles kRowWarps + ...)
// x the 32 tokens of token tile blockIdx.y, over units [u0, u1) of K: share blockIdx.x of
// gridDim.x, which is the cluster's size (the CTAs of one cluster split K and add their sums
// through distributed shared memory, in rank order). The tile's activations come through the
// shared ring, loaded kStages - 1 k-steps ahead with cp.async; weights go from global memory (L2,
// prefetched ahead) to registers once per unit, with one m tile a unit ahead of their use (two m
// tiles have no registers for it), and are turned into float16 fragments step by step.
template <class Q, int kMTiles>
__global__ void __launch_bounds__(kThreads, 4)
    matmul_dequant_mma_kernel(const __grid_constant__ MmaArgs args) {
  constexpr int kWarpRows = 16 * kMTiles;
  constexpr int kAcc = kMTiles * kNTiles * 4;  // accumulators per lane
  constexpr bool kAhead = kMTiles == 1;
  constexpr int64_t kPrefetchUnits = kPrefetchElems / (Q::kSteps * 32);
  __shared__ __align__(16) uint8_t ring[kStages][kSlotBytes];

  const int tid = static_cast<int>(threadIdx.x), warp = tid / 32, lane = tid % 32;
  const int g = lane / 4, t = lane % 4;
  const DeviceMatrix& w = args.w;
  const int splits = static_cast<int>(gridDim.x), split = static_cast<int>(blockIdx.x);
  const int64_t first_row = (static_cast<int64_t>(blockIdx.z) * kRowWarps + warp) * kWarpRows;
  const int64_t first_token = static_cast<int64_t>(blockIdx.y) * kTileTokens;
  const int64_t tile_tokens = min(static_cast<int64_t>(kTileTokens), args.tokens - first_token);
  const int n_tiles = static_cast<int>((tile_tokens + 7) / 8);
  const int64_t blocks = w.cols / 32;
  const int64_t units = (blocks + Q::kSteps - 1) / Q::kSteps;
  const int64_t u0 = units * split / splits, u1 = units * (split + 1) / splits;
  const int steps = static_cast<int>(min(u1 * Q::kSteps, blocks) - u0 * Q::kSteps);

  // Step gs of this CTA (block u0 * kSteps + gs) into slot gs % kStages: 16 bytes per thread;
  // tokens past the tile repeat its last one (their results are not stored).
  static_assert(kTileTokens * 4 == kThreads, "one 16-byte copy per thread and k-step");
  const int copy_token = tid / 4, copy_part = tid % 4;
  const __half* copy_from = args.x + (first_token + min(static_cast<int64_t>(copy_token), tile_tokens - 1)) * w.cols +
                            8 * copy_part;
  const auto issue = [&](int gs) {
    if (gs >= steps) return;
    cp_async16(ring[gs % kStages] + copy_token * 64 + 16 * copy_part, copy_from + (u0 * Q::kSteps + gs) * 32);
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
      for (int h = 0; h < 2; ++h) into[m][h] = load_unit<Q>(w.data + static_cast<int64_t>(row_of[m][h]) * w.row_bytes, u, t, blocks);
  };
  if (kAhead && u0 < u1) load_all(next, u0);

  // The activations are written by the previous kernel of the stream: wait for it only now that
  // the first weights are on their way.
  wait_then_allow_next_kernel();
#pragma unroll 1
  for (int i = 0; i < kStages - 1; ++i) {
    issue(i);
    cp_async_commit();
  }

  float acc[kMTiles][kNTiles][4];
#pragma unroll
  for (int m = 0; m < kMTiles; ++m)
#pragma unroll
    for (int n = 0; n < kNTiles; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[m][n][e] = 0.0f;

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
    } else {
      load_all(raw, u);
    }
#pragma unroll
    for (int s = 0; s < Q::kSteps; ++s, ++gs) {
      if (gs >= steps) break;  // only the small types' last unit
      cp_async_wait<kStages - 2>();
      __syncthreads();  // slot gs is in; every warp is done with slot gs - 1
      issue(gs + kStages - 1);
      cp_async_commit();
      const uint8_t* slot = ring[gs % kStages];

      uint32_t a[kMTiles][2][4];
#pragma unroll
      for (int m = 0; m < kMTiles; ++m) step_fragments<Q>(raw[m], s, a[m]);
#pragma unroll
      for (int n = 0; n < kNTiles; ++n) {
        if (n >= n_tiles) break;
        const uint8_t* x = slot + (8 * n + g) * 64;
        uint32_t b[2][2];
        if constexpr (Q::kContiguous) {  // elements 8t..8t+7
          const uint4 v = *reinterpret_cast<const uint4*>(x + 16 * t);
          b[0][0] = v.x, b[0][1] = v.y, b[1][0] = v.z, b[1][1] = v.w;
        } else {  // elements 4t..4t+3 and 16+4t..16+4t+3
          const uint2 lo = *reinterpret_cast<const uint2*>(x + 8 * t);
          const uint2 hi = *reinterpret_cast<const uint2*>(x + 32 + 8 * t);
          b[0][0] = lo.x, b[0][1] = lo.y, b[1][0] = hi.x, b[1][1] = hi.y;
        }
#pragma unroll
        for (int m = 0; m < kMTiles; ++m) {
          mma_f16(acc[m][n], a[m][0], b[0][0], b[0][1]);
          mma_f16(acc[m][n], a[m][1], b[1][0], b[1][1]);
        }
      }
    }
  }

  const Output<kMTiles> out{args, first_row, tile_tokens, g, t};
  if (splits == 1) {
#pragma unroll
    for (int i = 0; i < kAcc; ++i) out.store(i, acc[i / (kNTiles * 4)][i / 4 % kNTiles][i % 4]);
    return;
  }
  // Each CTA of the cluster publishes its sums; CTA q then adds accumulators i = q (mod splits)
  // of all CTAs in rank order and stores them; the second barrier keeps every CTA's shared
  // memory alive until the others have read it.
  __shared__ float partial[kAcc][kThreads];
#pragma unroll
  for (int i = 0; i < kAcc; ++i) partial[i][tid] = acc[i / (kNTiles * 4)][i / 4 % kNTiles][i % 4];
  namespace cg = cooperative_groups;
  const cg::cluster_group cluster = cg::this_cluster();
  cluster.sync();
  const int rank = static_cast<int>(cluster.block_rank());
#pragma unroll
  for (int i = 0; i < kAcc; ++i) {
    if (i % splits != rank) continue;
    float sum = 0.0f;
    for (int q = 0; q < splits; ++q) sum += *cluster.map_shared_rank(&partial[i][tid], q);
    out.store(i, sum);
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

}  // namespace

MmaShape matmul_dequant_mma_shape(int64_t rows, int64_t cols, int64_t tokens) {
  // K is split over the most CTAs of a cluster that still fit in one wave of four CTAs per
  // multiprocessor (at most one split per 256 elements of K). Warps of 32 rows (each B fragment
  // used twice) when that gives at least half a wave; else warps of 16 rows, twice the CTAs, with
  // weights loaded a unit ahead (H200: 7B q/o and down at 32 tokens, the 0.5B FFN).
  const int64_t slots = 4 * static_cast<int64_t>(multiprocessor_count());
  const auto fit = [&](int warp_rows) {
    MmaShape shape{warp_rows, 1};
    const int64_t row_tiles = (rows + kRowWarps * warp_rows - 1) / (kRowWarps * warp_rows);
    const int64_t ctas = row_tiles * ((tokens + kTileTokens - 1) / kTileTokens);
    for (const int splits : {2, 3, 4, 6, 8}) {
      if (ctas * splits > slots || splits > cols / 256) break;
      shape.splits = splits;
    }
    return std::make_pair(shape, ctas * shape.splits);
  };
  const auto wide = fit(32);
  return 2 * wide.second >= slots ? wide.first : fit(16).first;
}

void matmul_dequant_mma_tiled(const DeviceMatrix& w, const void* x, float* y, int64_t ldy,
                           const float* bias, bool accumulate, int64_t tokens, MmaShape shape,
                           cudaStream_t stream) {
  if (tokens <= 0 || w.rows <= 0 || w.cols <= 0) return;
  const int splits = std::clamp(shape.splits, 1, kMaxSplits);
  const int warp_rows = shape.warp_rows == 16 ? 16 : 32;
  // Token tiles go over gridDim.y (at most 65535 per launch).
  const int64_t chunk = int64_t{65535} * kTileTokens;
  const bool known = with_mma_type(w.type, [&](auto q) {
    using Q = decltype(q);
    for (int64_t t0 = 0; t0 < tokens; t0 += chunk) {
      const int64_t n = std::min(chunk, tokens - t0);
      const MmaArgs args{w, static_cast<const __half*>(x) + t0 * w.cols, y + t0 * ldy, ldy, bias, accumulate, n};
      cudaLaunchConfig_t config{};
      config.gridDim = dim3(static_cast<unsigned>(splits), static_cast<unsigned>((n + kTileTokens - 1) / kTileTokens),
                            static_cast<unsigned>((w.rows + kRowWarps * warp_rows - 1) / (kRowWarps * warp_rows)));
      config.blockDim = dim3(kThreads);
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
      check_launch(warp_rows == 16 ? cudaLaunchKernelEx(&config, matmul_dequant_mma_kernel<Q, 1>, args)
                                   : cudaLaunchKernelEx(&config, matmul_dequant_mma_kernel<Q, 2>, args),
                   "matmul_dequant_mma_kernel");
    }
  });
  if (!known) unhandled_case("matmul_dequant_mma", "weight type", w.type);
}

void matmul_dequant_mma(const DeviceMatrix& w, const void* x, float* y, int64_t ldy,
                     const float* bias, bool accumulate, int64_t tokens, cudaStream_t stream) {
  matmul_dequant_mma_tiled(w, x, y, ldy, bias, accumulate, tokens,
                        matmul_dequant_mma_shape(w.rows, w.cols, tokens), stream);
}

}  // namespace realizar::cuda
