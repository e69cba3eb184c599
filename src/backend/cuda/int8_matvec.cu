// Matrix-vector products of quantized weights with int8-quantized activations (the approach of
// llama.cpp's mmvq kernels, written anew here): activations are quantized once per matmul input to
// blocks of 32 int8 values with a float scale d and d * sum(q) (ggml's q8_1), and each weight
// block's integer values are dotted with them four at a time by __dp4a; the block scales are
// applied once per (weight block, activation block) pair. No weight is converted to float.
//
// A "unit" is the piece of a weight row one lane handles per step (64 elements of a K-quant
// block, one 32-element block of the small types). Lanes of a warp take consecutive units of one
// row, so a warp's loads cover contiguous bytes; each lane issues the loads of kUnitsInFlight
// units (split_units_in_flight in the split kernels) before using any of them.
#include <cuda_fp16.h>

#include <type_traits>

#include "backend/cuda/block_access.cuh"
#include "backend/cuda/kernels.h"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/q8_block.cuh"
#include "realizar/quant_blocks.h"

namespace realizar::cuda {
namespace {

// The 8 words (32 int8 values) of activation block `block` of one token.
__device__ __forceinline__ void load_x_block(const int8_t* xq, int64_t block, int (&x)[8]) {
  const int4* p = reinterpret_cast<const int4*>(xq + block * 32);
  const int4 a = __ldg(p), b = __ldg(p + 1);
  x[0] = a.x; x[1] = a.y; x[2] = a.z; x[3] = a.w;
  x[4] = b.x; x[5] = b.y; x[6] = b.z; x[7] = b.w;
}

// The activations one unit is dotted with, loaded once and shared by the rows a lane handles.
struct OneActivationBlock {
  int q[8];
  float2 a;  // {d, d * sum(q)}
  __device__ static OneActivationBlock load(const int8_t* xq, const float2* xds, int64_t block) {
    OneActivationBlock x;
    load_x_block(xq, block, x.q);
    x.a = __ldg(xds + block);
    return x;
  }
};

struct TwoActivationBlocks {
  int q0[8], q1[8];
  float2 a0, a1;
  __device__ static TwoActivationBlocks load(const int8_t* xq, const float2* xds, int64_t first) {
    TwoActivationBlocks x;
    load_x_block(xq, first, x.q0);
    load_x_block(xq, first + 1, x.q1);
    x.a0 = __ldg(xds + first);
    x.a1 = __ldg(xds + first + 1);
    return x;
  }
};

__device__ __forceinline__ int dot8(const uint32_t* w, const int* x) {
  int s = 0;
#pragma unroll
  for (int k = 0; k < 8; ++k) s = __dp4a(static_cast<int>(w[k]), x[k], s);
  return s;
}

// d * scale and dmin * min of sub-blocks 2c and 2c + 1 of a Q4_K or Q5_K block (both types start
// with d, dmin and the 12 bytes of 6-bit scales and mins), and the pair's part of a dot product:
// x = d * sc * q - dmin * m per sub-block.
struct SubBlockPairScales : KQuantHead::ScaledPair {
  __device__ static SubBlockPairScales load(const uint8_t* blk, int c) {
    return {KQuantHead::load(blk).scaled_pair(c)};
  }
  // s0, s1: the integer dot products of the two sub-blocks with activation blocks x.
  __device__ float apply(int s0, int s1, const TwoActivationBlocks& x) const {
    return d0 * x.a0.x * static_cast<float>(s0) - m0 * x.a0.y +
           d1 * x.a1.x * static_cast<float>(s1) - m1 * x.a1.y;
  }
};

// Q4_K (256-element blocks): unit c of a block = sub-blocks 2c (low nibbles of qs[32c..32c+31])
// and 2c+1 (their high nibbles); x = d * sc * q - dmin * m per sub-block.
struct Q4K {
  static constexpr int kUnitElems = 64;
  static constexpr int kOneTokenCtas = 5;  // ctas_per_multiprocessor
  struct W {
    uint32_t q[8];
    SubBlockPairScales scales;
  };
  __device__ static W load(const uint8_t* row, int64_t u) {
    const uint8_t* blk = row + (u / 4) * sizeof(block_q4_K);
    const int c = static_cast<int>(u % 4);
    W w;
    const uint4* qs = reinterpret_cast<const uint4*>(blk + 16 + 32 * c);
    words_of(__ldg(qs), w.q);
    words_of(__ldg(qs + 1), w.q + 4);
    w.scales = SubBlockPairScales::load(blk, c);
    return w;
  }
  using X = TwoActivationBlocks;
  // Activation blocks 2u (sub-block 2c) and 2u + 1 (2c + 1) of the token.
  __device__ static X load_x(const int8_t* xq, const float2* xds, int64_t u) { return X::load(xq, xds, 2 * u); }
  __device__ static float dot(const W& w, const X& x) {
    int s0 = 0, s1 = 0;
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      s0 = __dp4a(static_cast<int>(nibble_levels(w.q[k], 0)), x.q0[k], s0);
      s1 = __dp4a(static_cast<int>(nibble_levels(w.q[k], 1)), x.q1[k], s1);
    }
    return w.scales.apply(s0, s1, x);
  }
};

// Q5_K: as Q4_K with bit 4 of element 32b + j at bit b of qh[j].
struct Q5K {
  static constexpr int kUnitElems = 64;
  static constexpr int kOneTokenCtas = 3;  // ctas_per_multiprocessor
  struct W {
    uint32_t lo[8], hi[8];  // 5-bit values of sub-blocks 2c and 2c + 1, one per byte
    SubBlockPairScales scales;
  };
  __device__ static W load(const uint8_t* row, int64_t u) {
    const uint8_t* blk = row + (u / 4) * sizeof(block_q5_K);
    const int c = static_cast<int>(u % 4);
    uint32_t qh[8];
    W w;
    const uint4* qs4 = reinterpret_cast<const uint4*>(blk + 48 + 32 * c);
    const uint4* qh4 = reinterpret_cast<const uint4*>(blk + 16);
    words_of(__ldg(qs4), w.lo);
    words_of(__ldg(qs4 + 1), w.lo + 4);
    words_of(__ldg(qh4), qh);
    words_of(__ldg(qh4 + 1), qh + 4);
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      w.hi[k] = q5_k_levels(w.lo[k], qh[k], 2 * c + 1);
      w.lo[k] = q5_k_levels(w.lo[k], qh[k], 2 * c);
    }
    w.scales = SubBlockPairScales::load(blk, c);
    return w;
  }
  using X = TwoActivationBlocks;
  __device__ static X load_x(const int8_t* xq, const float2* xds, int64_t u) { return X::load(xq, xds, 2 * u); }
  __device__ static float dot(const W& w, const X& x) {
    const int s0 = dot8(w.lo, x.q0), s1 = dot8(w.hi, x.q1);
    return w.scales.apply(s0, s1, x);
  }
};

// Q6_K (256-element blocks of 210 bytes, 2-byte aligned): unit = positions l0..l0+15
// (l0 = 16 * (u % 2)) of half h = (u % 4) / 2: element 128h + 32r + l0 + i of quarter r = 0..3
// takes the low (r = 0, 1) or high (r = 2, 3) nibble of ql[64h + 32(r % 2) + l0 + i] and bits
// 2r, 2r + 1 of qh[32h + l0 + i]; x = d * scales[8h + l0 / 16 + 2r] * (q - 32).
struct Q6K {
  static constexpr int kUnitElems = 64;
  static constexpr int kOneTokenCtas = 4;  // ctas_per_multiprocessor
  struct W {
    uint32_t a[4], b[4], h[4];  // ql (quarters 0/2), ql (quarters 1/3), qh
    float d[4];                 // d * scale of each quarter
  };
  __device__ static W load(const uint8_t* row, int64_t u) {
    const uint8_t* blk = row + (u / 4) * sizeof(block_q6_K);
    const int half = static_cast<int>(u % 4) / 2, l0 = 16 * static_cast<int>(u % 2);
    W w;
    load_words_2aligned<4>(blk + 64 * half + l0, w.a);
    load_words_2aligned<4>(blk + 64 * half + 32 + l0, w.b);
    load_words_2aligned<4>(blk + 128 + 32 * half + l0, w.h);
    const int8_t* scales = reinterpret_cast<const int8_t*>(blk + 192) + 8 * half + l0 / 16;
    const float d = half_at(blk + 208);
#pragma unroll
    for (int r = 0; r < 4; ++r) w.d[r] = d * scales[2 * r];
    return w;
  }
  struct X {
    int4 q[4];   // quarter r's 16 activations
    float d[4];  // their block's scale
  };
  // Quarter r's 16 activations: half l0 / 16 of activation block 8 (u / 4) + 4h + r.
  __device__ static X load_x(const int8_t* xq, const float2* xds, int64_t u) {
    const int64_t first_block = 2 * (u - u % 2);
    const int64_t l0 = 16 * (u % 2);
    X x;
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      x.q[r] = __ldg(reinterpret_cast<const int4*>(xq + (first_block + r) * 32 + l0));
      x.d[r] = __ldg(xds + first_block + r).x;
    }
    return x;
  }
  __device__ static float dot(const W& w, const X& x) {
    float sum = 0.0f;
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int xr[4] = {x.q[r].x, x.q[r].y, x.q[r].z, x.q[r].w};
      int s = 0;
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const uint32_t q = q6_k_levels(r % 2 == 0 ? w.a[k] : w.b[k], w.h[k], r);
        s = __dp4a(static_cast<int>(__vsubss4(q, 0x20202020u)), xr[k], s);
      }
      sum += w.d[r] * x.d[r] * static_cast<float>(s);
    }
    return sum;
  }
};

// Q8_0 (34-byte blocks, 2-byte aligned): unit = one block, x = d * q.
struct Q80 {
  static constexpr int kUnitElems = 32;
  static constexpr int kOneTokenCtas = 7;  // ctas_per_multiprocessor
  struct W {
    uint32_t q[8];
    float d;
  };
  __device__ static W load(const uint8_t* row, int64_t u) {
    const uint8_t* blk = row + u * sizeof(block_q8_0);
    W w;
    load_words_2aligned<8>(blk + 2, w.q);
    w.d = half_at(blk);
    return w;
  }
  using X = OneActivationBlock;
  __device__ static X load_x(const int8_t* xq, const float2* xds, int64_t u) { return X::load(xq, xds, u); }
  __device__ static float dot(const W& w, const X& x) {
    return w.d * x.a.x * static_cast<float>(dot8(w.q, x.q));
  }
};

// Q4_0 (x = d * (q - 8)), Q4_1 (x = d * q + m) and Q5_0 (x = d * (q - 16), bit 4 of element j at
// bit j of qh): unit = one block; element j < 16 in the low nibble of qs[j], j + 16 in the high.
template <uint32_t kType>
struct Small4 {
  static constexpr int kUnitElems = 32;
  static constexpr int kOneTokenCtas = 6;  // ctas_per_multiprocessor
  static constexpr size_t kBlockBytes = kType == kQ4_0 ? sizeof(block_q4_0)
                                        : kType == kQ4_1 ? sizeof(block_q4_1)
                                                         : sizeof(block_q5_0);
  struct W {
    uint32_t q[8];  // elements 0..15 then 16..31, one per byte
    float d, m;     // m: the offset term's factor, -8 d, -16 d or m
  };
  __device__ static W load(const uint8_t* row, int64_t u) {
    const uint8_t* blk = row + u * kBlockBytes;
    W w;
    uint32_t qs[4];
    uint32_t qh = 0;
    if constexpr (kType == kQ4_1) {
      const uint32_t dm = __ldg(reinterpret_cast<const uint32_t*>(blk));
#pragma unroll
      for (int k = 0; k < 4; ++k) qs[k] = __ldg(reinterpret_cast<const uint32_t*>(blk + 4) + k);
      w.d = __half2float(__ushort_as_half(static_cast<uint16_t>(dm & 0xFFFF)));
      w.m = __half2float(__ushort_as_half(static_cast<uint16_t>(dm >> 16)));
    } else if constexpr (kType == kQ5_0) {
      uint32_t head[5];  // d, qh, qs as 2 + 4 + 16 bytes from blk + 0
      load_words_2aligned<5>(blk + 2, head);
      qh = head[0];
#pragma unroll
      for (int k = 0; k < 4; ++k) qs[k] = head[k + 1];
      w.d = half_at(blk);
      w.m = -16.0f * w.d;
    } else {
      load_words_2aligned<4>(blk + 2, qs);
      w.d = half_at(blk);
      w.m = -8.0f * w.d;
    }
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      if constexpr (kType == kQ5_0) {
        w.q[k] = q5_0_levels(qs[k], 0, qh >> (4 * k));
        w.q[k + 4] = q5_0_levels(qs[k], 1, qh >> (16 + 4 * k));
      } else {
        w.q[k] = nibble_levels(qs[k], 0);
        w.q[k + 4] = nibble_levels(qs[k], 1);
      }
    }
    return w;
  }
  // sum (d q + m) d_x q_x = d d_x sum(q q_x) + m (d_x sum(q_x)).
  using X = OneActivationBlock;
  __device__ static X load_x(const int8_t* xq, const float2* xds, int64_t u) { return X::load(xq, xds, u); }
  __device__ static float dot(const W& w, const X& x) {
    return w.d * x.a.x * static_cast<float>(dot8(w.q, x.q)) + w.m * x.a.y;
  }
};

constexpr int kWarpsPerBlock = 4;
constexpr int kUnitsInFlight = 2;  // units per lane loaded before the first is used
constexpr int kMaxTokens = 8;      // activation vectors per pass over the weights
// Rows per warp: two rows share each activation load (half the L1 traffic per weight byte).
// Measured on the H200 (tg128, synth Q4_K_M): one row 293 t/s on 7B, two 334, four 288 (register
// pressure); two wins at every model size (docs/perf-notes.md). Two is also what the roped parts
// need: the rows RoPE rotates together share a warp.
constexpr int kRowsPerWarp = 2;

// Rows of the parts laid end to end over the grid: CTA b belongs to the last part whose
// first_cta <= b.
struct PartsOnGrid {
  MatvecPart part[kMaxMatvecParts];
  unsigned first_cta[kMaxMatvecParts];
  int count;
};

__host__ __device__ __forceinline__ bool is_roped(PartOutput output) {
  return output == PartOutput::RopedQuery || output == PartOutput::RopedKeyToCache;
}

// The two rows of row pair `pair` of a part with `rows` rows: 2 pair and 2 pair + 1, except in the
// roped parts, whose pairs are the two rows RoPE rotates together (rope_and_store_kv: (i, i +
// rope_dim / 2) of a head in the NeoX style, (2i, 2i + 1) otherwise; the dims past rope_dim in
// consecutive pairs, unrotated). `frequency`: the pair's index into inv_freq, -1 when unrotated.
// A pair past the end is the last pair, not stored (`valid`).
struct RowPair {
  int64_t row[kRowsPerWarp];
  bool valid[kRowsPerWarp];
  int frequency;
  // Row r's entries by selects: indexing the arrays with a lane-dependent r would put them in
  // local memory.
  __device__ int64_t row_of(int r) const { return r == 0 ? row[0] : row[1]; }
  __device__ bool valid_of(int r) const { return r == 0 ? valid[0] : valid[1]; }
};
__device__ __forceinline__ RowPair rows_of_pair(int64_t pair, int64_t rows, bool roped, const RopeParams& p) {
  RowPair rp{};
  rp.frequency = -1;
  if (!roped) {
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      rp.row[r] = min(2 * pair + r, rows - 1);
      rp.valid[r] = 2 * pair + r < rows;
    }
    return rp;
  }
  const bool valid = pair < rows / 2;
  pair = min(pair, rows / 2 - 1);
  const int per_head = p.head_dim / 2, half = p.rope_dim / 2;
  const int64_t base = pair / per_head * p.head_dim;
  const int i = static_cast<int>(pair % per_head);
  const bool rotated = i < half;
  rp.row[0] = base + (rotated && p.neox ? i : 2 * i);
  rp.row[1] = base + (rotated && p.neox ? i + half : 2 * i + 1);
  rp.valid[0] = rp.valid[1] = valid;
  rp.frequency = rotated ? i : -1;
  return rp;
}

// y[t][row] (+)= value: a Rows part's output.
__device__ __forceinline__ void store_y(const MatvecPart& part, int t, int64_t row, float value, bool accumulate) {
  float* out = part.y + t * part.ldy + row;
  *out = accumulate ? *out + value : value;
}

// Stores row r of token t: value = W x + bias of that row, `pair` its pair's two values (for the
// rotation; the arithmetic of rope_kv_kernel in layer_kernels.cu, so that both give the same bits).
__device__ __forceinline__ void store_row(const MatvecPart& part, const KvWrite& kv, const RowPair& rp, int t, int r,
                                          const float (&pair)[kRowsPerWarp], double2 rotation, bool accumulate) {
  const int64_t row = rp.row_of(r);
  const int64_t kv_dim = static_cast<int64_t>(kv.rope.head_count_kv) * kv.rope.head_dim;
  float value = r == 0 ? pair[0] : pair[1];
  if (rp.frequency >= 0) {  // a rotated pair of a roped part
    const double x0 = pair[0], x1 = pair[1];
    value = static_cast<float>(r == 0 ? x0 * rotation.x - x1 * rotation.y : x0 * rotation.y + x1 * rotation.x);
  }
  switch (part.output) {
    case PartOutput::Rows:
      store_y(part, t, row, value, accumulate);
      return;
    case PartOutput::RopedQuery:
      part.y[t * part.ldy + row] = value;
      return;
    case PartOutput::RopedKeyToCache:
      static_cast<__half*>(kv.key_cache)[kv.slots[t] * kv_dim + row] = __float2half_rn(value);
      return;
    case PartOutput::ValueToCache:
      static_cast<__half*>(kv.value_cache)[kv.slots[t] * kv_dim + row] = __float2half_rn(value);
      return;
  }
}

constexpr int kThreads = kWarpsPerBlock * 32;

// The CTAs per multiprocessor a kernel is compiled for (the register budget ptxas gets; 0: its
// own choice). The one-token kernels with the RoPE and KV cache epilogue get the occupancy of the
// plain kernel of their type, which ptxas, left to itself, traded for more registers (Q6_K 128 ->
// 146, Q8_0 71 -> 79).
template <class Q, int T, bool kKv>
constexpr int ctas_per_multiprocessor() {
  return kKv && T == 1 ? Q::kOneTokenCtas : 0;
}

// Units per lane in flight in the kernels that split long rows over warps (one token; the FFN
// down projections). Measured on the H200 (matvec bench, 7B down 3584 x 18944, one token, µs; 2
// / 3 / 4 / 6 units): Q4_K 17.8 / 15.1 / 17.9 / 20.4, Q6_K 26.2 / 29.2 / 32.8 / 34.2 (its units
// hold more registers; docs/perf-notes.md).
template <class Q>
constexpr int split_units_in_flight() {
  return std::is_same_v<Q, Q4K> ? 3 : kUnitsInFlight;
}

// One group of S warps per P row pairs; the S warps of a group split the rows' units (S > 1 for
// long rows of one token: a warp alone waits on its loads round after round) and add their sums
// through shared memory. P = 2 for one token's short rows (at most 32 units: one unit per lane and
// row): the warp's four rows share each activation load, and all their weights are requested
// before the wait, with half the CTAs (fewer waves).
template <class Q, int T, int S, bool kKv, int P>
__global__ void __launch_bounds__(kThreads, (ctas_per_multiprocessor<Q, T, kKv>()))
    matvec_int8_kernel(const __grid_constant__ PartsOnGrid parts, int64_t cols,
                       const int8_t* __restrict__ xq, const float2* __restrict__ xds,
                       bool accumulate, const __grid_constant__ KvWrite kv) {
  static_assert(kWarpsPerBlock % S == 0, "the warps of a CTA form whole groups");
  static_assert(P == 1 || (S == 1 && T == 1 && !kKv), "two row pairs per warp: one token, unsplit rows, no RoPE");
  constexpr int R = kRowsPerWarp;
  static_assert(R == 2, "row pairs (rows_of_pair)");
  int p = 0;
#pragma unroll
  for (int i = 1; i < kMaxMatvecParts; ++i) p = (i < parts.count && blockIdx.x >= parts.first_cta[i]) ? i : p;
  const MatvecPart& part = parts.part[p];
  const int warp = static_cast<int>(threadIdx.x) / 32, slice = warp % S;
  const int64_t first_pair =
      (static_cast<int64_t>(blockIdx.x - parts.first_cta[p]) * (kWarpsPerBlock / S) + warp / S) * P;
  const bool roped = kKv && is_roped(part.output);
  RowPair rp[P];
  const uint8_t* wrow[P][R];
#pragma unroll
  for (int k = 0; k < P; ++k) {
    rp[k] = rows_of_pair(first_pair + k, part.w.rows, roped, kv.rope);
#pragma unroll
    for (int r = 0; r < R; ++r) wrow[k][r] = part.w.data + rp[k].row[r] * part.w.row_bytes;
  }
  const int lane = threadIdx.x % 32;
  const int64_t units = cols / Q::kUnitElems;
  float acc[P][T][R];
#pragma unroll
  for (int k = 0; k < P; ++k) {
#pragma unroll
    for (int t = 0; t < T; ++t) {
#pragma unroll
      for (int r = 0; r < R; ++r) acc[k][t][r] = 0.0f;
    }
  }
  constexpr int kStride = 32 * S;  // units between a lane's consecutive units
  constexpr int kInFlight = P > 1 ? 1 : S > 1 ? split_units_in_flight<Q>() : kUnitsInFlight;
  typename Q::W wv[P][kInFlight][R];
  auto load_units = [&](int64_t u0) {
#pragma unroll
    for (int k = 0; k < kInFlight; ++k) {
#pragma unroll
      for (int q = 0; q < P; ++q) {
#pragma unroll
        for (int r = 0; r < R; ++r) {
          if (u0 + kStride * k < units) wv[q][k][r] = Q::load(wrow[q][r], u0 + kStride * k);
        }
      }
    }
  };
  // The first weights are requested before waiting for the kernel that writes the activations
  // (launch.cuh): for the small matrices of decode that is the whole row.
  const int64_t first = 32 * slice + lane;
  load_units(first);
  double2 rotation = make_double2(1.0, 0.0);  // of the one pair of a roped part (kKv: P == 1)
  if (rp[0].frequency >= 0 && lane < T * R) {
    sincos(static_cast<double>(kv.positions[lane / R]) * kv.rope.inv_freq[rp[0].frequency], &rotation.y, &rotation.x);
  }
  wait_then_allow_next_kernel();
  for (int64_t u0 = first; u0 < units; u0 += kStride * kInFlight) {
    if (u0 != first) load_units(u0);
#pragma unroll
    for (int k = 0; k < kInFlight; ++k) {
      if (u0 + kStride * k >= units) break;
#pragma unroll
      for (int t = 0; t < T; ++t) {
        const typename Q::X x = Q::load_x(xq + t * cols, xds + t * (cols / 32), u0 + kStride * k);
#pragma unroll
        for (int q = 0; q < P; ++q) {
#pragma unroll
          for (int r = 0; r < R; ++r) acc[q][t][r] += Q::dot(wv[q][k][r], x);
        }
      }
    }
  }
#pragma unroll
  for (int q = 0; q < P; ++q) {
#pragma unroll
    for (int t = 0; t < T; ++t) {
#pragma unroll
      for (int r = 0; r < R; ++r) {
#pragma unroll
        for (int offset = 16; offset > 0; offset /= 2) {
          acc[q][t][r] += __shfl_xor_sync(0xFFFFFFFFu, acc[q][t][r], offset);
        }
      }
    }
  }
  if constexpr (S > 1) {
    __shared__ float partial[kWarpsPerBlock][T * R];
    if (lane == 0) {
#pragma unroll
      for (int t = 0; t < T; ++t) {
#pragma unroll
        for (int r = 0; r < R; ++r) partial[warp][t * R + r] = acc[0][t][r];
      }
    }
    __syncthreads();
    if (slice == 0) {
#pragma unroll
      for (int t = 0; t < T; ++t) {
#pragma unroll
        for (int r = 0; r < R; ++r) {
          acc[0][t][r] = 0.0f;
#pragma unroll
          for (int s = 0; s < S; ++s) acc[0][t][r] += partial[warp + s][t * R + r];  // slices in order
        }
      }
    }
  }
  // Lane t * R + r stores token t of row rp.row_of(r) of each pair; every lane holds the sums of
  // all rows.
  const int t = lane / R, r = lane % R;
#pragma unroll
  for (int q = 0; q < P; ++q) {
    if (!kKv && slice == 0 && t < T && rp[q].valid_of(r)) {
      float value = 0.0f;
#pragma unroll
      for (int tt = 0; tt < T; ++tt) {
#pragma unroll
        for (int rr = 0; rr < R; ++rr) value = (tt * R + rr == lane) ? acc[q][tt][rr] : value;
      }
      const int64_t row = rp[q].row_of(r);
      if (part.bias != nullptr) value += part.bias[row];
      store_y(part, t, row, value, accumulate);
    }
    if (kKv && slice == 0 && t < T && rp[q].valid_of(r)) {
      float pair_values[R];
#pragma unroll
      for (int rr = 0; rr < R; ++rr) {
        float sum = 0.0f;
#pragma unroll
        for (int tt = 0; tt < T; ++tt) sum = tt == t ? acc[q][tt][rr] : sum;
        pair_values[rr] = sum + (part.bias != nullptr ? part.bias[rp[q].row[rr]] : 0.0f);
      }
      store_row(part, kv, rp[q], t, r, pair_values, rotation, accumulate);
    }
  }
}

// Warps per row group for one token: rows of at least 128 units (the 7B and 32B FFN down
// projections) are split over 2 warps. Measured on the H200 (one token, docs/perf-notes.md): 7B
// down 28.7 -> 26.3 us, 32B down 61.5 -> 51.1 us; 4 warps were no better (27.5, 51.2) and
// shorter rows lose (7B q/o 3.7 -> 5.2 us at 2 warps).
constexpr int kSplitMinUnits = 128;
int warps_per_row(int64_t units) { return units >= kSplitMinUnits ? 2 : 1; }

// Row pairs of a part (a roped part's rows are whole heads: an even count).
int64_t row_pairs(const MatvecPart& part) { return (part.w.rows + kRowsPerWarp - 1) / kRowsPerWarp; }

// kKv: some part's output is not Rows (the Q/K/V launch with its RoPE and KV cache write); the
// others keep the kernels without that epilogue.
template <class Q, bool kKv>
void launch_matvec_int8(const MatvecPart* parts, int count, ActivationsQ8 x, bool accumulate,
                        int64_t tokens, const KvWrite& kv, cudaStream_t stream) {
  const int64_t cols = parts[0].w.cols;
  // Splitting a row over warps is for one token (decode): with more, each warp has T tokens'
  // work per weight load already.
  const int split = tokens == 1 ? warps_per_row(cols / Q::kUnitElems) : 1;
  // Two row pairs per warp for one token's short rows (0.5B and 1.5B: measured on the H200, tg128
  // +2.7 % and +1.3 %, docs/perf-notes.md). Not for Q/K/V with the RoPE epilogue: their grid is one
  // wave already, and the rotation of two pairs spills under that kernel's register budget.
  const int pairs_per_warp = !kKv && tokens == 1 && cols / Q::kUnitElems <= 32 ? 2 : 1;
  const int64_t pairs_per_cta = kWarpsPerBlock / split * pairs_per_warp;
  PartsOnGrid grid_parts{};
  grid_parts.count = count;
  unsigned ctas = 0;
  for (int i = 0; i < count; ++i) {
    grid_parts.part[i] = parts[i];
    grid_parts.first_cta[i] = ctas;
    ctas += static_cast<unsigned>((row_pairs(parts[i]) + pairs_per_cta - 1) / pairs_per_cta);
  }
  const dim3 block(kThreads);
  const float2* xds = reinterpret_cast<const float2*>(x.ds);
  if (split != 1 && split != 2) unhandled_case("matvec_int8", "warps per row", split);
  if (split == 2) {
    check_launch(launch(matvec_int8_kernel<Q, 1, 2, kKv, 1>, ctas, block, stream, grid_parts, cols, x.q, xds,
                        accumulate, kv),
                 "matvec_int8_kernel");
    return;
  }
  if constexpr (!kKv) {
    if (pairs_per_warp == 2) {
      check_launch(launch(matvec_int8_kernel<Q, 1, 1, false, 2>, ctas, block, stream, grid_parts, cols, x.q, xds,
                          accumulate, kv),
                   "matvec_int8_kernel");
      return;
    }
  }
  for (int64_t t0 = 0; t0 < tokens; t0 += kMaxTokens) {
    const int64_t n = tokens - t0 < kMaxTokens ? tokens - t0 : kMaxTokens;
    PartsOnGrid pass = grid_parts;
    for (int i = 0; i < count; ++i) pass.part[i].y = parts[i].y + t0 * parts[i].ldy;
    KvWrite pass_kv = kv;  // its positions and slots from the pass's first token
    if (kv.positions != nullptr) {
      pass_kv.positions += t0;
      pass_kv.slots += t0;
    }
    with_count<kMaxTokens>(n, [&](auto n_tokens) {
      check_launch(launch(matvec_int8_kernel<Q, decltype(n_tokens)::value, 1, kKv, 1>, ctas, block, stream, pass, cols,
                          x.q + t0 * cols, xds + t0 * (cols / 32), accumulate, pass_kv),
                   "matvec_int8_kernel");
    });
  }
}
template <class F>
bool with_int8_type(uint32_t type, F&& f) {
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

// One warp per 32-element block, lane = element.
__global__ void quantize_q8_kernel(const float* __restrict__ x, int64_t blocks, int8_t* q,
                                   float2* ds) {
  wait_then_allow_next_kernel();
  const int64_t block = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  if (block >= blocks) return;  // whole warps: blocks * 32 threads
  store_q8_block(x[block * 32 + threadIdx.x % 32], block, q, ds);
}

}  // namespace

bool matvec_reads_int8(uint32_t type) {
  return with_int8_type(type, [](auto) {});
}

void quantize_activations(const float* x, int64_t cols, int64_t tokens, ActivationsQ8 out,
                          cudaStream_t stream) {
  const int64_t blocks = tokens * (cols / 32);
  if (blocks == 0) return;
  constexpr int kThreads = 256;
  check_launch(launch(quantize_q8_kernel, static_cast<unsigned>((blocks * 32 + kThreads - 1) / kThreads), kThreads, stream, x, blocks, out.q, reinterpret_cast<float2*>(out.ds)), "quantize_q8_kernel");
}

void matvec_int8(const DeviceMatrix& w, ActivationsQ8 x, float* y, int64_t ldy, const float* bias,
                 bool accumulate, int64_t tokens, cudaStream_t stream) {
  const MatvecPart part{w, y, ldy, bias};
  matvec_int8_parts(&part, 1, x, accumulate, tokens, stream);
}

void matvec_int8_parts(const MatvecPart* parts, int count, ActivationsQ8 x, bool accumulate,
                       int64_t tokens, cudaStream_t stream, const KvWrite* kv) {
  if (count <= 0) return;
  if (count > kMaxMatvecParts) unhandled_case("matvec_int8", "part count", count);
  const KvWrite outputs = kv != nullptr ? *kv : KvWrite{};
  const RopeParams& rope = outputs.rope;
  for (int i = 0; i < count; ++i) {
    const PartOutput output = parts[i].output;
    if (output == PartOutput::Rows) continue;
    if (kv == nullptr || accumulate) {
      unhandled_case("matvec_int8", "part output without a KvWrite or with accumulate", static_cast<int>(output));
    }
    const int64_t heads = output == PartOutput::RopedQuery ? rope.head_count : rope.head_count_kv;
    if (parts[i].w.rows != heads * rope.head_dim || rope.head_dim % 2 != 0 || rope.rope_dim % 2 != 0 ||
        rope.rope_dim > rope.head_dim) {
      unhandled_case("matvec_int8", "rows of a roped or cache part", parts[i].w.rows);
    }
  }
  const bool known = with_int8_type(parts[0].w.type, [&](auto q) {
    if (kv != nullptr) {
      launch_matvec_int8<decltype(q), true>(parts, count, x, accumulate, tokens, outputs, stream);
    } else {
      launch_matvec_int8<decltype(q), false>(parts, count, x, accumulate, tokens, outputs, stream);
    }
  });
  if (!known) unhandled_case("matvec_int8", "weight type", parts[0].w.type);
}

}  // namespace realizar::cuda
