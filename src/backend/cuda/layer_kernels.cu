// Per-token kernels of a transformer layer: normalization, RoPE with the KV cache write,
// activations (attention: attention.cu, flash_attention.cu). Formulas as in the reference backend
// (src/backend/reference/reference_backend.cpp), float32 arithmetic.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>

#include "backend/cuda/kernels.h"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/q8_block.cuh"

namespace realizar::cuda {
namespace {

constexpr int kNormThreads = 256;

// Sum over the block (blockDim.x == kNormThreads); every thread gets the total.
__device__ float block_sum(float v, float* scratch) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xFFFFFFFFu, v, offset);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();  // scratch may still be read from a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float total = 0.0f;
  for (int w = 0; w < kNormThreads / 32; ++w) total += scratch[w];
  return total;
}

constexpr int kNormMaxVectors = 16;  // vectors per thread, held in registers

// Asks for the 128-byte lines of floats p[0, n) in this multiprocessor's L1 (one line per thread
// of the CTA, as many rounds as needed), without waiting for them.
__device__ __forceinline__ void prefetch_to_l1(const float* p, int n) {
  for (int64_t byte = 128 * static_cast<int64_t>(threadIdx.x); byte < 4 * static_cast<int64_t>(n);
       byte += 128 * static_cast<int64_t>(blockDim.x)) {
    asm volatile("prefetch.global.L1 [%0];" ::"l"(reinterpret_cast<const char*>(p) + byte));
  }
}

template <int kVec>
__device__ __forceinline__ void load_vector(const float* p, float (&out)[kVec]) {
  if constexpr (kVec == 4) {
    const float4 f = *reinterpret_cast<const float4*>(p);
    out[0] = f.x, out[1] = f.y, out[2] = f.z, out[3] = f.w;
  } else {
    out[0] = *p;
  }
}

template <int kVec>
__device__ __forceinline__ void store_vector(float* p, const float (&v)[kVec]) {
  if constexpr (kVec == 4) {
    *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
  } else {
    *p = v[0];
  }
}

// One CTA per token. The row is read once into registers (thread i holds vectors i, i + 256, ...
// of kVec floats), so the two reductions and the output need no second pass over memory and all
// loads are in flight together. With kVec = 4 and width % 32 == 0, 8 consecutive threads hold a
// 32-value block, which lets the kernel also write the int8 blocks of the output.
template <int kVec>
__global__ void __launch_bounds__(kNormThreads)
    norm_kernel(const float* __restrict__ x, const float* __restrict__ weight,
                const float* __restrict__ bias, float* out, int width, float epsilon,
                bool layer_norm, InputCopy copy) {
  // The weights (and bias) are brought to L1 before the wait: one memory latency fewer on the
  // chain of a decode step, where this kernel is one CTA per token.
  prefetch_to_l1(weight, width);
  if (bias != nullptr) prefetch_to_l1(bias, width);
  wait_then_allow_next_kernel();
  __shared__ float scratch[kNormThreads / 32];
  const float* xt = x + static_cast<int64_t>(blockIdx.x) * width;
  float* ot = out + static_cast<int64_t>(blockIdx.x) * width;
  const int vectors = width / kVec;
  float v[kNormMaxVectors][kVec];
  float sum = 0.0f;
#pragma unroll
  for (int k = 0; k < kNormMaxVectors; ++k) {
    const int i = threadIdx.x + k * kNormThreads;
#pragma unroll
    for (int e = 0; e < kVec; ++e) v[k][e] = 0.0f;
    if (i < vectors) load_vector(xt + i * kVec, v[k]);
#pragma unroll
    for (int e = 0; e < kVec; ++e) sum += v[k][e];
  }
  const float mean = layer_norm ? block_sum(sum, scratch) / static_cast<float>(width) : 0.0f;
  float squares = 0.0f;
#pragma unroll
  for (int k = 0; k < kNormMaxVectors; ++k) {
    if (threadIdx.x + k * kNormThreads >= vectors) continue;
#pragma unroll
    for (int e = 0; e < kVec; ++e) {
      v[k][e] -= mean;
      squares += v[k][e] * v[k][e];
    }
  }
  const float scale = rsqrtf(block_sum(squares, scratch) / static_cast<float>(width) + epsilon);
#pragma unroll
  for (int k = 0; k < kNormMaxVectors; ++k) {
    const int i = threadIdx.x + k * kNormThreads;
    if (k * kNormThreads + (threadIdx.x & ~31) >= vectors) break;  // the whole warp is past the end
    const bool inside = i < vectors;
    if (inside) {
      float w[kVec], b[kVec] = {};
      load_vector(weight + i * kVec, w);
      if (bias != nullptr) load_vector(bias + i * kVec, b);
#pragma unroll
      for (int e = 0; e < kVec; ++e) v[k][e] = v[k][e] * scale * w[e] + b[e];
      store_vector(ot + i * kVec, v[k]);
      if (copy.half != nullptr) {
        store_halves<kVec>(v[k], static_cast<__half*>(copy.half) + static_cast<int64_t>(blockIdx.x) * width + i * kVec);
      }
    }
    if constexpr (kVec == 4) {
      if (copy.q8.q != nullptr) {  // width % 32 == 0: each 8-thread group is inside or not
        store_q8_block<4>(v[k], (static_cast<int64_t>(blockIdx.x) * width + i * 4) / 32, copy.q8.q,
                          reinterpret_cast<float2*>(copy.q8.ds), inside);
      }
    }
  }
}

__global__ void gather_kernel(const float* __restrict__ x, const int32_t* __restrict__ rows,
                              int64_t width, float* out) {
  wait_then_allow_next_kernel();
  const float* src = x + static_cast<int64_t>(rows[blockIdx.x]) * width;
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x) out[blockIdx.x * width + i] = src[i];
}

constexpr int kMaxRopePairs = 64;  // rope_dim <= head_dim <= 128

// One CTA per token. The rope_dim / 2 rotations (cos, sin of position * inv_freq[i], float64) are
// computed once into shared memory and shared by all heads; then each thread takes (head, pair)
// elements: query pairs (with their biases) are rotated in place, key pairs go rotated straight to
// the cache; the unrotated dims (partial RoPE) get their biases, and keys and values go to the
// cache.
__global__ void rope_kv_kernel(RopeParams p, QkvBias bias, float* q, const float* __restrict__ k,
                               const float* __restrict__ v, const int32_t* __restrict__ positions,
                               const int32_t* __restrict__ slots, __half* key_cache,
                               __half* value_cache) {
  // The rotations depend only on the step's positions (uploaded before its first kernel, never
  // written by one): computed before the wait, while the Q/K/V product finishes.
  __shared__ double2 rotation[kMaxRopePairs];
  const int t = blockIdx.x, half = p.rope_dim / 2, hd = p.head_dim;
  const int q_dim = p.head_count * hd, kv_dim = p.head_count_kv * hd;
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    double s, c;
    sincos(static_cast<double>(positions[t]) * p.inv_freq[i], &s, &c);
    rotation[i] = make_double2(c, s);
  }
  wait_then_allow_next_kernel();
  __syncthreads();
  float* qt = q + static_cast<int64_t>(t) * q_dim;
  const float* kt = k + static_cast<int64_t>(t) * kv_dim;
  const float* vt = v + static_cast<int64_t>(t) * kv_dim;
  const int64_t slot = slots[t];
  __half* kc = key_cache + slot * kv_dim;
  __half* vc = value_cache + slot * kv_dim;
  const auto biased = [](const float* x, const float* b, int i) { return b != nullptr ? x[i] + b[i] : x[i]; };
  for (int e = threadIdx.x; e < (p.head_count + p.head_count_kv) * half; e += blockDim.x) {
    const int h = e / half, i = e % half;
    const int a = p.neox ? i : 2 * i, b = p.neox ? i + half : 2 * i + 1;
    const bool query = h < p.head_count;
    const int offset = (query ? h : h - p.head_count) * hd;
    const float* head = query ? qt : kt;
    const float* head_bias = query ? bias.q : bias.k;
    const double x0 = biased(head, head_bias, offset + a), x1 = biased(head, head_bias, offset + b);
    const double2 r = rotation[i];
    const float y0 = static_cast<float>(x0 * r.x - x1 * r.y);
    const float y1 = static_cast<float>(x0 * r.y + x1 * r.x);
    if (query) {
      qt[offset + a] = y0;
      qt[offset + b] = y1;
    } else {
      kc[offset + a] = __float2half_rn(y0);
      kc[offset + b] = __float2half_rn(y1);
    }
  }
  if (bias.q != nullptr && p.rope_dim < hd) {
    for (int i = threadIdx.x; i < q_dim; i += blockDim.x) {
      if (i % hd >= p.rope_dim) qt[i] += bias.q[i];
    }
  }
  for (int i = threadIdx.x; i < kv_dim; i += blockDim.x) {
    if (i % hd >= p.rope_dim) kc[i] = __float2half_rn(biased(kt, bias.k, i));
    vc[i] = __float2half_rn(biased(vt, bias.v, i));
  }
}

__global__ void swiglu_kernel(const float* __restrict__ gate, float* up, int64_t n, InputCopy copy) {
  wait_then_allow_next_kernel();
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) {  // n % 32 == 0 when quantizing: whole warps pass or fail together
    const float g = gate[i];
    const float v = g / (1.0f + expf(-g)) * up[i];
    up[i] = v;
    if (copy.half != nullptr) store_half(v, copy.half, i);
    if (copy.q8.q != nullptr) store_q8_block(v, i / 32, copy.q8.q, reinterpret_cast<float2*>(copy.q8.ds));
  }
}

__global__ void gelu_kernel(float* x, int64_t n) {
  wait_then_allow_next_kernel();
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) {
    constexpr float kSqrt2OverPi = 0.7978845608028654f;
    const float v = x[i];
    x[i] = 0.5f * v * (1.0f + tanhf(kSqrt2OverPi * (v + 0.044715f * v * v * v)));
  }
}

unsigned blocks_for(int64_t n, int threads) { return static_cast<unsigned>((n + threads - 1) / threads); }

}  // namespace

bool norm_width_supported(int64_t width) {
  return width > 0 && width <= kNormThreads * kNormMaxVectors * (width % 4 == 0 ? 4 : 1);
}

void norm_rows(const float* x, const float* weight, const float* bias, float* out, int64_t width,
               int64_t tokens, float epsilon, bool layer_norm, InputCopy copy, cudaStream_t stream) {
  if (tokens == 0) return;
  const unsigned grid = static_cast<unsigned>(tokens);
  const int w = static_cast<int>(width);
  if (width % 4 == 0) {
    check_launch(launch(norm_kernel<4>, grid, kNormThreads, stream, x, weight, bias, out, w, epsilon, layer_norm, copy), "norm_kernel");
  } else {
    check_launch(launch(norm_kernel<1>, grid, kNormThreads, stream, x, weight, bias, out, w, epsilon, layer_norm,
           InputCopy{{}, copy.half}), "norm_kernel");
  }
}

void gather_rows(const float* x, const int32_t* rows, int64_t count, int64_t width, float* out,
                 cudaStream_t stream) {
  if (count == 0) return;
  check_launch(launch(gather_kernel, static_cast<unsigned>(count), 256, stream, x, rows, width, out), "gather_kernel");
}

void rope_and_store_kv(const RopeParams& p, const QkvBias& bias, float* q, const float* k, const float* v,
                       const int32_t* positions, const int32_t* slots, int64_t tokens,
                       void* key_cache, void* value_cache, cudaStream_t stream) {
  if (tokens == 0) return;
  check_launch(launch(rope_kv_kernel, static_cast<unsigned>(tokens), 256, stream, p, bias, q, k, v, positions,
                      slots, static_cast<__half*>(key_cache), static_cast<__half*>(value_cache)),
               "rope_kv_kernel");
}

void swiglu(const float* gate, float* up, int64_t n, InputCopy copy, cudaStream_t stream) {
  if (n > 0) check_launch(launch(swiglu_kernel, blocks_for(n, 256), 256, stream, gate, up, n, copy), "swiglu_kernel");
}

void gelu(float* x, int64_t n, cudaStream_t stream) {
  if (n > 0) check_launch(launch(gelu_kernel, blocks_for(n, 256), 256, stream, x, n), "gelu_kernel");
}

double measure_device_copy_bandwidth() {
  constexpr size_t kBytes = size_t{1} << 30;
  void *a = nullptr, *b = nullptr;
  if (cudaMalloc(&a, kBytes) != cudaSuccess || cudaMalloc(&b, kBytes) != cudaSuccess) {
    cudaFree(a);
    cudaGetLastError();
    return 0.0;
  }
  cudaMemset(a, 1, kBytes);
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  float best_ms = 1e30f;
  for (int i = 0; i < 6; ++i) {
    cudaEventRecord(start);
    cudaMemcpyAsync(b, a, kBytes, cudaMemcpyDeviceToDevice);
    cudaEventRecord(stop);
    cudaEventSynchronize(stop);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    if (i > 0 && ms < best_ms) best_ms = ms;  // the first copy is a warm-up
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaFree(a);
  cudaFree(b);
  return 2.0 * static_cast<double>(kBytes) / (best_ms * 1e-3);
}

}  // namespace realizar::cuda
