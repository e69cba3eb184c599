// RMSNorm (Zhang & Sennrich 2019) and LayerNorm (Ba et al. 2016) of one row of floats, computed by
// one CTA: the norm kernel (layer_kernels.cu, one CTA per token) and the prologue of the one-token
// int8 products that normalize their own input (int8_matvec.cu, NormInput) both use these, so
// that both give the same bits.
//
// The sums are taken in the order of kNormOrderThreads = 256 threads whatever the CTA's size: a
// CTA of kThreads threads (a divisor of 256, whole warps) plays 256 / kThreads of those threads
// in turn, each adding its vectors i, i + 256, ... element by element, then the warps reduce by
// xor shuffles and the 8 warp totals are added in order.
#pragma once

#include <cstdint>

namespace realizar::cuda {

constexpr int kNormOrderThreads = 256;
constexpr int kNormOrderWarps = kNormOrderThreads / 32;

// Asks for the 128-byte lines of floats p[0, n) in this multiprocessor's L1 (one line per thread
// of the CTA, as many rounds as needed), without waiting for them: the norm weights, which no
// kernel writes, before the PDL wait.
__device__ __forceinline__ void prefetch_to_l1(const float* p, int64_t n) {
  for (int64_t byte = 128 * static_cast<int64_t>(threadIdx.x); byte < 4 * n; byte += 128 * static_cast<int64_t>(blockDim.x)) {
    asm volatile("prefetch.global.L1 [%0];" ::"l"(reinterpret_cast<const char*>(p) + byte));
  }
}

template <int kVec>
struct FloatVector {
  float v[kVec];
  __device__ static FloatVector load(const float* p) {
    FloatVector f;
    if constexpr (kVec == 4) {
      const float4 a = *reinterpret_cast<const float4*>(p);
      f.v[0] = a.x, f.v[1] = a.y, f.v[2] = a.z, f.v[3] = a.w;
    } else {
#pragma unroll
      for (int e = 0; e < kVec; ++e) f.v[e] = p[e];
    }
    return f;
  }
};

// sum over vectors i < `vectors` of term(i) (a FloatVector<kVec>, added element by element), in
// the order above. Every thread of the CTA (kThreads) calls it and gets the total; `scratch`
// holds kNormOrderWarps floats of shared memory.
template <int kThreads, int kVec, class Term>
__device__ float ordered_row_sum(int64_t vectors, Term term, float* scratch) {
  static_assert(kNormOrderThreads % kThreads == 0 && kThreads % 32 == 0, "whole warps dividing 256");
  __syncthreads();  // scratch may still be read from a previous call
#pragma unroll
  for (int pass = 0; pass < kNormOrderThreads / kThreads; ++pass) {
    const int j = static_cast<int>(threadIdx.x) + pass * kThreads;  // the thread of 256 played
    float sum = 0.0f;
    for (int64_t i = j; i < vectors; i += kNormOrderThreads) {
      const FloatVector<kVec> t = term(i);
#pragma unroll
      for (int e = 0; e < kVec; ++e) sum += t.v[e];
    }
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xFFFFFFFFu, sum, offset);
    if (j % 32 == 0) scratch[j / 32] = sum;
  }
  __syncthreads();
  float total = 0.0f;
#pragma unroll
  for (int w = 0; w < kNormOrderWarps; ++w) total += scratch[w];
  return total;
}

// out = (x - mean) * scale * weight + bias for each element of the row.
struct RowNorm {
  float mean;   // 0 for RMSNorm
  float scale;  // 1 / sqrt(mean((x - mean)^2) + epsilon)

  // Of row x[0, width), width a multiple of kVec; called by every thread of the CTA.
  template <int kThreads, int kVec>
  __device__ static RowNorm of(const float* x, int64_t width, float epsilon, bool layer_norm, float* scratch) {
    const int64_t vectors = width / kVec;
    const auto element = [&](int64_t i) { return FloatVector<kVec>::load(x + i * kVec); };
    RowNorm n{0.0f, 0.0f};
    if (layer_norm) n.mean = ordered_row_sum<kThreads, kVec>(vectors, element, scratch) / static_cast<float>(width);
    const auto square = [&](int64_t i) {
      FloatVector<kVec> v = element(i);
#pragma unroll
      for (int e = 0; e < kVec; ++e) {
        v.v[e] -= n.mean;
        v.v[e] *= v.v[e];
      }
      return v;
    };
    n.scale = rsqrtf(ordered_row_sum<kThreads, kVec>(vectors, square, scratch) / static_cast<float>(width) + epsilon);
    return n;
  }

  // Elements [i * kVec, (i + 1) * kVec) of the output; bias may be null.
  template <int kVec>
  __device__ FloatVector<kVec> apply(const float* x, const float* weight, const float* bias, int64_t i) const {
    FloatVector<kVec> v = FloatVector<kVec>::load(x + i * kVec);
    const FloatVector<kVec> w = FloatVector<kVec>::load(weight + i * kVec);
    FloatVector<kVec> b{};
    if (bias != nullptr) b = FloatVector<kVec>::load(bias + i * kVec);
#pragma unroll
    for (int e = 0; e < kVec; ++e) v.v[e] = (v.v[e] - mean) * scale * w.v[e] + b.v[e];
    return v;
  }
};

}  // namespace realizar::cuda
