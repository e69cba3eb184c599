// Weight kernels: matrix-vector products, dequantization to float16 and embedding lookup, for
// weights kept in ggml's block layout (include/realizar/quant_blocks.h).
//
// Every type is read through a "unit loader": a unit is a piece of a row whose bytes are read
// together (16 bytes of Q4_K nibbles, a whole Q8_0 block, ...) and decode to kRuns runs of kRunLen
// consecutive elements, run r starting at element base(u) + r * kRunStride. The matrix-vector
// kernel gives consecutive units to consecutive lanes of a warp, so a warp's loads cover
// contiguous bytes of the row.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdio>

#include "backend/cuda/block_access.cuh"
#include "backend/cuda/kernels.h"
#include "backend/cuda/launch.cuh"
#include "realizar/quant_blocks.h"

namespace realizar::cuda {
namespace {

// v - offset as float for 0 <= v < 2^23, exactly: v in the mantissa of 2^23, minus 2^23 +
// offset. Two full-rate ALU operations instead of an integer-to-float conversion (quarter rate),
// which made the matrix-vector kernels instruction-bound.
__device__ __forceinline__ float small_int_minus(uint32_t v, float offset) {
  return __int_as_float(0x4B000000 | v) - (8388608.0f + offset);
}

// `n` bytes from a 2-byte aligned address (the blocks of Q4_0, Q5_0, Q8_0 and Q6_K are only
// 2-byte aligned), as 16-bit loads.
template <int n>
__device__ __forceinline__ void load_bytes_2aligned(const uint8_t* p, uint8_t (&out)[n]) {
  static_assert(n % 2 == 0, "even byte counts only");
  const uint16_t* p16 = reinterpret_cast<const uint16_t*>(p);
#pragma unroll
  for (int i = 0; i < n / 2; ++i) {
    const uint16_t v = p16[i];
    out[2 * i] = static_cast<uint8_t>(v & 0xFF);
    out[2 * i + 1] = static_cast<uint8_t>(v >> 8);
  }
}

// Byte i of `word` (a level of block_access.cuh's *_levels) as float, minus `offset`.
__device__ __forceinline__ float level_minus(uint32_t word, int i, float offset) {
  return small_int_minus((word >> (8 * i)) & 0xFFu, offset);
}

// Q4_K: unit = 16 bytes of qs (8 units per 256-element block). Bytes qs[32c + 16h + i] hold
// element 64c + 16h + i (low nibble, sub-block 2c) and that + 32 (high nibble, sub-block 2c + 1).
struct Q4K {
  static constexpr int kRuns = 2, kRunLen = 16, kRunStride = 32, kUnitElems = 32;
  __device__ static int64_t base(int64_t u) { return (u / 8) * 256 + (u % 8 / 2) * 64 + (u % 2) * 16; }
  __device__ static void load(const uint8_t* row, int64_t u, float (&w)[kRuns][kRunLen]) {
    const uint8_t* blk = row + (u / 8) * sizeof(block_q4_K);
    const int c = static_cast<int>(u % 8) / 2, h = static_cast<int>(u % 2);
    const KQuantHead::ScaledPair s = KQuantHead::load(blk).scaled_pair(c);
    uint32_t q[4];
    words_of(*reinterpret_cast<const uint4*>(blk + 16 + 32 * c + 16 * h), q);
#pragma unroll
    for (int i = 0; i < 16; ++i) {
      w[0][i] = s.d0 * level_minus(nibble_levels(q[i / 4], 0), i % 4, 0.0f) - s.m0;
      w[1][i] = s.d1 * level_minus(nibble_levels(q[i / 4], 1), i % 4, 0.0f) - s.m1;
    }
  }
};

// Q5_K: as Q4_K, with bit 4 of element 32*b + j at bit b of qh[j].
struct Q5K {
  static constexpr int kRuns = 2, kRunLen = 16, kRunStride = 32, kUnitElems = 32;
  __device__ static int64_t base(int64_t u) { return Q4K::base(u); }
  __device__ static void load(const uint8_t* row, int64_t u, float (&w)[kRuns][kRunLen]) {
    const uint8_t* blk = row + (u / 8) * sizeof(block_q5_K);
    const int c = static_cast<int>(u % 8) / 2, h = static_cast<int>(u % 2);
    const KQuantHead::ScaledPair s = KQuantHead::load(blk).scaled_pair(c);
    uint32_t q[4], qh[4];
    words_of(*reinterpret_cast<const uint4*>(blk + 48 + 32 * c + 16 * h), q);
    words_of(*reinterpret_cast<const uint4*>(blk + 16 + 16 * h), qh);
#pragma unroll
    for (int i = 0; i < 16; ++i) {
      w[0][i] = s.d0 * level_minus(q5_k_levels(q[i / 4], qh[i / 4], 2 * c), i % 4, 0.0f) - s.m0;
      w[1][i] = s.d1 * level_minus(q5_k_levels(q[i / 4], qh[i / 4], 2 * c + 1), i % 4, 0.0f) - s.m1;
    }
  }
};

// Q6_K: unit = positions j0..j0+7 (j0 = 8*(u%4)) of the four 32-element quarters of half h of a
// block: element 128h + 32r + j0 + i, r = 0..3 (8 units per block).
struct Q6K {
  static constexpr int kRuns = 4, kRunLen = 8, kRunStride = 32, kUnitElems = 32;
  __device__ static int64_t base(int64_t u) { return (u / 8) * 256 + (u % 8 / 4) * 128 + (u % 4) * 8; }
  __device__ static void load(const uint8_t* row, int64_t u, float (&w)[kRuns][kRunLen]) {
    const uint8_t* blk = row + (u / 8) * sizeof(block_q6_K);
    const int h = static_cast<int>(u % 8) / 4, j0 = static_cast<int>(u % 4) * 8;
    uint32_t a[2], b[2], hi[2];
    load_words_2aligned<2>(blk + 64 * h + j0, a);        // quarters 0 (low nibble) and 2 (high)
    load_words_2aligned<2>(blk + 64 * h + 32 + j0, b);   // quarters 1 and 3
    load_words_2aligned<2>(blk + 128 + 32 * h + j0, hi);  // top 2 bits, quarter r at bits 2r
    const int8_t* scales = reinterpret_cast<const int8_t*>(blk + 192) + 8 * h + (j0 >= 16 ? 1 : 0);
    const float d = half_at(blk + 208);
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const float dr = d * scales[2 * r];
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        w[r][i] = dr * level_minus(q6_k_levels(r % 2 == 0 ? a[i / 4] : b[i / 4], hi[i / 4], r), i % 4, 32.0f);
      }
    }
  }
};

// Q4_0 / Q5_0: unit = one 32-element block; element j < 16 in the low nibble of qs[j], j + 16 in
// the high nibble; Q5_0's bit 4 of element j is bit j of qh.
template <bool kFifthBit>
struct Q4or5_0 {
  static constexpr int kRuns = 2, kRunLen = 16, kRunStride = 16, kUnitElems = 32;
  static constexpr int kBlockBytes = kFifthBit ? sizeof(block_q5_0) : sizeof(block_q4_0);
  __device__ static int64_t base(int64_t u) { return u * 32; }
  __device__ static void load(const uint8_t* row, int64_t u, float (&w)[kRuns][kRunLen]) {
    const uint8_t* blk = row + u * kBlockBytes;
    const float d = half_at(blk);
    uint32_t q[4];
    uint32_t qh = 0;
    if constexpr (kFifthBit) {
      load_words_2aligned<1>(blk + 2, &qh);
      load_words_2aligned<4>(blk + 6, q);
    } else {
      load_words_2aligned<4>(blk + 2, q);
    }
    const float offset = kFifthBit ? 16.0f : 8.0f;
#pragma unroll
    for (int i = 0; i < 16; ++i) {
      const int k = i / 4;
      const uint32_t lo = kFifthBit ? q5_0_levels(q[k], 0, qh >> (4 * k)) : nibble_levels(q[k], 0);
      const uint32_t hi = kFifthBit ? q5_0_levels(q[k], 1, qh >> (16 + 4 * k)) : nibble_levels(q[k], 1);
      w[0][i] = d * level_minus(lo, i % 4, offset);
      w[1][i] = d * level_minus(hi, i % 4, offset);
    }
  }
};

// Q4_1: unit = one 32-element block (4-byte aligned), x = d * q + m; nibbles as Q4_0.
struct Q41 {
  static constexpr int kRuns = 2, kRunLen = 16, kRunStride = 16, kUnitElems = 32;
  __device__ static int64_t base(int64_t u) { return u * 32; }
  __device__ static void load(const uint8_t* row, int64_t u, float (&w)[kRuns][kRunLen]) {
    const uint8_t* blk = row + u * sizeof(block_q4_1);
    const float d = half_at(blk), m = half_at(blk + 2);
    uint32_t q[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) q[k] = reinterpret_cast<const uint32_t*>(blk + 4)[k];  // 4-byte aligned
#pragma unroll
    for (int i = 0; i < 16; ++i) {
      w[0][i] = d * level_minus(nibble_levels(q[i / 4], 0), i % 4, 0.0f) + m;
      w[1][i] = d * level_minus(nibble_levels(q[i / 4], 1), i % 4, 0.0f) + m;
    }
  }
};

// Q8_0: unit = one 32-element block, x = d * q.
struct Q80 {
  static constexpr int kRuns = 1, kRunLen = 32, kRunStride = 0, kUnitElems = 32;
  __device__ static int64_t base(int64_t u) { return u * 32; }
  __device__ static void load(const uint8_t* row, int64_t u, float (&w)[kRuns][kRunLen]) {
    const uint8_t* blk = row + u * sizeof(block_q8_0);
    const float d = half_at(blk);
    uint8_t q[32];
    load_bytes_2aligned(blk + 2, q);
#pragma unroll
    for (int i = 0; i < 32; ++i) w[0][i] = d * small_int_minus(q[i] ^ 0x80u, 128.0f);  // int8 + 128
  }
};

// F16 / BF16: unit = 8 elements (16 bytes).
template <bool kBrain>
struct Half16 {
  static constexpr int kRuns = 1, kRunLen = 8, kRunStride = 0, kUnitElems = 8;
  __device__ static int64_t base(int64_t u) { return u * 8; }
  __device__ static void load(const uint8_t* row, int64_t u, float (&w)[kRuns][kRunLen]) {
    const uint4 v = *reinterpret_cast<const uint4*>(row + u * 16);
    const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const uint16_t bits = static_cast<uint16_t>(words[i / 2] >> (16 * (i % 2)));
      w[0][i] = kBrain ? __uint_as_float(static_cast<uint32_t>(bits) << 16)
                       : __half2float(__ushort_as_half(bits));
    }
  }
};

// F32: unit = 4 elements.
struct F32 {
  static constexpr int kRuns = 1, kRunLen = 4, kRunStride = 0, kUnitElems = 4;
  __device__ static int64_t base(int64_t u) { return u * 4; }
  __device__ static void load(const uint8_t* row, int64_t u, float (&w)[kRuns][kRunLen]) {
    const float4 v = *reinterpret_cast<const float4*>(row + u * 16);
    w[0][0] = v.x;
    w[0][1] = v.y;
    w[0][2] = v.z;
    w[0][3] = v.w;
  }
};

constexpr int kWarpsPerBlock = 4;
constexpr int kMaxTokens = 8;  // activation vectors per pass over the weights

template <class Q, int T>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    matvec_kernel(DeviceMatrix w, const float* __restrict__ x, int64_t ldx, float* y, int64_t ldy,
                  const float* __restrict__ bias, bool accumulate) {
  wait_then_allow_next_kernel();
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= w.rows) return;
  const uint8_t* wrow = w.data + row * w.row_bytes;
  const int64_t units = w.cols / Q::kUnitElems;
  float acc[T];
#pragma unroll
  for (int t = 0; t < T; ++t) acc[t] = 0.0f;
#pragma unroll 2
  for (int64_t u = lane; u < units; u += 32) {
    float wv[Q::kRuns][Q::kRunLen];
    Q::load(wrow, u, wv);
    const int64_t base = Q::base(u);
#pragma unroll
    for (int t = 0; t < T; ++t) {
      const float* xt = x + t * ldx + base;
      float sum = 0.0f;
#pragma unroll
      for (int r = 0; r < Q::kRuns; ++r) {
#pragma unroll
        for (int i = 0; i < Q::kRunLen; i += 4) {
          const float4 xv = __ldg(reinterpret_cast<const float4*>(xt + r * Q::kRunStride + i));
          sum += wv[r][i] * xv.x + wv[r][i + 1] * xv.y + wv[r][i + 2] * xv.z + wv[r][i + 3] * xv.w;
        }
      }
      acc[t] += sum;
    }
  }
#pragma unroll
  for (int t = 0; t < T; ++t) {
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) acc[t] += __shfl_xor_sync(0xFFFFFFFFu, acc[t], offset);
  }
  if (lane < T) {
    float value = 0.0f;
#pragma unroll
    for (int t = 0; t < T; ++t) value = (t == lane) ? acc[t] : value;
    if (bias != nullptr) value += bias[row];
    float* out = y + lane * ldy + row;
    *out = accumulate ? *out + value : value;
  }
}

template <class Q>
void launch_matvec(const DeviceMatrix& w, const float* x, int64_t ldx, float* y, int64_t ldy,
                   const float* bias, bool accumulate, int64_t tokens, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((w.rows + kWarpsPerBlock - 1) / kWarpsPerBlock));
  const dim3 block(kWarpsPerBlock * 32);
  for (int64_t t0 = 0; t0 < tokens; t0 += kMaxTokens) {
    const int64_t n = tokens - t0 < kMaxTokens ? tokens - t0 : kMaxTokens;
    const float* xs = x + t0 * ldx;
    float* ys = y + t0 * ldy;
    with_count<kMaxTokens>(n, [&](auto count) {
      check_launch(launch(matvec_kernel<Q, decltype(count)::value>, grid, block, stream, w, xs, ldx, ys, ldy, bias,
             accumulate), "matvec_kernel");
    });
  }
}

// Calls f(Q{}) with the unit loader of `type`; returns false for unsupported types.
template <class F>
bool with_loader(uint32_t type, F&& f) {
  switch (type) {
    case kF32: f(F32{}); return true;
    case kF16: f(Half16<false>{}); return true;
    case kBF16: f(Half16<true>{}); return true;
    case kQ4_0: f(Q4or5_0<false>{}); return true;
    case kQ4_1: f(Q41{}); return true;
    case kQ5_0: f(Q4or5_0<true>{}); return true;
    case kQ8_0: f(Q80{}); return true;
    case kQ4_K: f(Q4K{}); return true;
    case kQ5_K: f(Q5K{}); return true;
    case kQ6_K: f(Q6K{}); return true;
    default: return false;
  }
}

// One thread per unit of rows [row_begin, row_begin + row_count); writes float16 or float32.
template <class Q, class Out>
__global__ void dequantize_kernel(DeviceMatrix w, const int32_t* __restrict__ row_ids,
                                  int64_t row_begin, int64_t row_count, Out* out) {
  wait_then_allow_next_kernel();
  const int64_t units = w.cols / Q::kUnitElems;
  const int64_t index = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (index >= units * row_count) return;
  const int64_t i = index / units, u = index % units;
  const int64_t row = row_ids != nullptr ? row_ids[i] : row_begin + i;
  float wv[Q::kRuns][Q::kRunLen];
  Q::load(w.data + row * w.row_bytes, u, wv);
  Out* dst = out + i * w.cols + Q::base(u);
#pragma unroll
  for (int r = 0; r < Q::kRuns; ++r) {
    if constexpr (sizeof(Out) == 2) {
      // Runs of 8 halves as one 16-byte store (4: one 8-byte store); rows of whole units keep
      // these aligned.
      constexpr int kChunk = Q::kRunLen >= 8 ? 8 : 4;
#pragma unroll
      for (int k = 0; k < Q::kRunLen; k += kChunk) {
        uint32_t packed[kChunk / 2];
#pragma unroll
        for (int e = 0; e < kChunk / 2; ++e) {
          packed[e] = static_cast<uint32_t>(__half_as_ushort(__float2half_rn(wv[r][k + 2 * e]))) |
                      (static_cast<uint32_t>(__half_as_ushort(__float2half_rn(wv[r][k + 2 * e + 1]))) << 16);
        }
        Out* at = dst + r * Q::kRunStride + k;
        if constexpr (kChunk == 8) {
          *reinterpret_cast<uint4*>(at) = make_uint4(packed[0], packed[1], packed[2], packed[3]);
        } else {
          *reinterpret_cast<uint2*>(at) = make_uint2(packed[0], packed[1]);
        }
      }
    } else {
#pragma unroll
      for (int k = 0; k < Q::kRunLen; ++k) dst[r * Q::kRunStride + k] = wv[r][k];
    }
  }
}

template <class Out>
void launch_dequantize(const DeviceMatrix& w, const int32_t* row_ids, int64_t row_begin,
                       int64_t row_count, Out* out, cudaStream_t stream) {
  const bool known = with_loader(w.type, [&](auto q) {
    using Q = decltype(q);
    const int64_t threads = row_count * (w.cols / Q::kUnitElems);
    if (threads == 0) return;
    check_launch(launch(dequantize_kernel<Q, Out>, static_cast<unsigned>((threads + 255) / 256), 256, stream, 
        w, row_ids, row_begin, row_count, out), "dequantize_kernel");
  });
  if (!known) unhandled_case("dequantize", "weight type", w.type);
}

__global__ void float_to_half_kernel(const float* __restrict__ src, __half* dst, int64_t n) {
  wait_then_allow_next_kernel();
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) dst[i] = __float2half_rn(src[i]);
}

__global__ void add_bias_kernel(float* y, int64_t ldy, const float* __restrict__ bias, int64_t rows,
                                int64_t tokens) {
  wait_then_allow_next_kernel();
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < rows * tokens) y[(i / rows) * ldy + i % rows] += bias[i % rows];
}

}  // namespace

bool matrix_type_supported(uint32_t type, int64_t cols) {
  int64_t unit = 0;
  const bool known = with_loader(type, [&](auto q) { unit = decltype(q)::kUnitElems; });
  return known && cols > 0 && cols % unit == 0;
}

void matvec(const DeviceMatrix& w, const float* x, int64_t ldx, float* y, int64_t ldy,
            const float* bias, bool accumulate, int64_t tokens, cudaStream_t stream) {
  switch (w.type) {
    case kF32: launch_matvec<F32>(w, x, ldx, y, ldy, bias, accumulate, tokens, stream); break;
    case kF16: launch_matvec<Half16<false>>(w, x, ldx, y, ldy, bias, accumulate, tokens, stream); break;
    case kBF16: launch_matvec<Half16<true>>(w, x, ldx, y, ldy, bias, accumulate, tokens, stream); break;
    default: unhandled_case("matvec (float weights; quantized ones take matvec_int8)", "weight type", w.type);
  }
}

void dequantize_to_half(const DeviceMatrix& w, int64_t row_begin, int64_t row_count, void* out,
                        cudaStream_t stream) {
  launch_dequantize(w, nullptr, row_begin, row_count, static_cast<__half*>(out), stream);
}

void embed_rows(const DeviceMatrix& w, const int32_t* tokens, int64_t count, float* out,
                cudaStream_t stream) {
  launch_dequantize(w, tokens, 0, count, out, stream);
}

void float_to_half(const float* src, void* dst, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  check_launch(launch(float_to_half_kernel, static_cast<unsigned>((n + 255) / 256), 256, stream, 
      src, static_cast<__half*>(dst), n), "float_to_half_kernel");
}

void add_bias(float* y, int64_t ldy, const float* bias, int64_t rows, int64_t tokens,
              cudaStream_t stream) {
  const int64_t n = rows * tokens;
  if (n == 0) return;
  check_launch(launch(add_bias_kernel, static_cast<unsigned>((n + 255) / 256), 256, stream, y, ldy, bias, rows,
                                                                               tokens), "add_bias_kernel");
}

}  // namespace realizar::cuda
