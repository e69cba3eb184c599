// Per-token kernels of a transformer layer: normalization, RoPE with the KV cache write, paged
// GQA attention (flash-decoding splits), activations. Formulas as in the reference backend
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
                bool layer_norm, ActivationsQ8 quantized) {
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
    }
    if constexpr (kVec == 4) {
      if (quantized.q != nullptr) {  // width % 32 == 0: each 8-thread group is inside or not
        store_q8_block<4>(v[k], (static_cast<int64_t>(blockIdx.x) * width + i * 4) / 32, quantized.q,
                          reinterpret_cast<float2*>(quantized.ds), inside);
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
// elements: query pairs are rotated in place, key pairs go rotated straight to the cache; the
// unrotated key dims (partial RoPE) and the values are copied to the cache.
__global__ void rope_kv_kernel(RopeParams p, float* q, const float* __restrict__ k,
                               const float* __restrict__ v, const int32_t* __restrict__ positions,
                               const int32_t* __restrict__ slots, __half* key_cache,
                               __half* value_cache) {
  wait_then_allow_next_kernel();
  __shared__ double2 rotation[kMaxRopePairs];
  const int t = blockIdx.x, half = p.rope_dim / 2, hd = p.head_dim;
  const int kv_dim = p.head_count_kv * hd;
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    double s, c;
    sincos(static_cast<double>(positions[t]) * p.inv_freq[i], &s, &c);
    rotation[i] = make_double2(c, s);
  }
  __syncthreads();
  float* qt = q + static_cast<int64_t>(t) * p.head_count * hd;
  const float* kt = k + static_cast<int64_t>(t) * kv_dim;
  const int64_t slot = slots[t];
  __half* kc = key_cache + slot * kv_dim;
  __half* vc = value_cache + slot * kv_dim;
  for (int e = threadIdx.x; e < (p.head_count + p.head_count_kv) * half; e += blockDim.x) {
    const int h = e / half, i = e % half;
    const int a = p.neox ? i : 2 * i, b = p.neox ? i + half : 2 * i + 1;
    const bool query = h < p.head_count;
    const int64_t offset = static_cast<int64_t>(query ? h : h - p.head_count) * hd;
    const float* head = query ? qt + offset : kt + offset;
    const double x0 = head[a], x1 = head[b];
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
  for (int i = threadIdx.x; i < kv_dim; i += blockDim.x) {
    if (i % hd >= p.rope_dim) kc[i] = __float2half_rn(kt[i]);
    vc[i] = __float2half_rn(v[static_cast<int64_t>(t) * kv_dim + i]);
  }
}

constexpr int kAttnWarps = 4;
constexpr int kMaxGroup = 8;     // query heads per KV head
constexpr int kMaxHeadDim = 128;
constexpr int kDimsPerLane = kMaxHeadDim / 32;
constexpr int kValuesInFlight = 16;  // value rows loaded before the first is used

// Grid (tokens, KV heads, splits), kAttnWarps warps. Each warp takes tiles of 32 keys: lane j
// scores key j against the group's query heads, the warp updates its running max and sum, then
// accumulates the values (lane l owns dims 4l..4l+3). The warps' states are merged at the end.
__global__ void __launch_bounds__(kAttnWarps * 32)
    attention_kernel(AttentionParams p, const float* __restrict__ q, const __half* key_cache,
                     const __half* value_cache, const int32_t* __restrict__ positions,
                     const int32_t* __restrict__ seq_rows, const int32_t* __restrict__ block_tables,
                     const int32_t* __restrict__ table_stride, float* partial_o,
                     float* partial_ml, float* out, ActivationsQ8 quantized) {
  wait_then_allow_next_kernel();
  __shared__ float q_s[kMaxGroup][kMaxHeadDim];
  __shared__ float p_s[kAttnWarps][kMaxGroup][32];
  __shared__ float m_s[kAttnWarps][kMaxGroup], l_s[kAttnWarps][kMaxGroup];
  __shared__ float o_s[kAttnWarps][kMaxGroup][kMaxHeadDim];

  const int t = blockIdx.x, kv_head = blockIdx.y, split = blockIdx.z, splits = gridDim.z;
  const int group = p.head_count / p.head_count_kv, hd = p.head_dim;
  const int kv_dim = p.head_count_kv * hd;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int length = positions[t] + 1;
  const int chunk = (length + splits - 1) / splits;
  const int begin = split * chunk, end = min(length, begin + chunk);
  const int32_t* table = block_tables + static_cast<int64_t>(seq_rows[t]) * (*table_stride);

  for (int i = threadIdx.x; i < group * hd; i += blockDim.x) {
    q_s[i / hd][i % hd] =
        q[static_cast<int64_t>(t) * p.head_count * hd + (kv_head * group + i / hd) * hd + i % hd] *
        p.scale;
  }
  __syncthreads();

  float m[kMaxGroup], l[kMaxGroup], o[kMaxGroup][kDimsPerLane];
#pragma unroll
  for (int g = 0; g < kMaxGroup; ++g) {
    m[g] = -INFINITY;
    l[g] = 0.0f;
#pragma unroll
    for (int d = 0; d < kDimsPerLane; ++d) o[g][d] = 0.0f;
  }
  const bool lane_has_dims = 4 * lane < hd;

  for (int tile = begin + 32 * warp; tile < end; tile += 32 * kAttnWarps) {
    // Lane j's key: its cache slot (shared with the other lanes for the values below), its row
    // loaded with every 16-byte load in flight at once.
    const int j = tile + lane;
    int64_t slot = 0;
    if (j < end) slot = static_cast<int64_t>(table[j / p.block_size]) * p.block_size + j % p.block_size;
    float s[kMaxGroup];
#pragma unroll
    for (int g = 0; g < kMaxGroup; ++g) s[g] = 0.0f;
    if (j < end) {
      const uint4* krow = reinterpret_cast<const uint4*>(key_cache + slot * kv_dim + kv_head * hd);
      uint4 raw[kMaxHeadDim / 8];
#pragma unroll
      for (int c = 0; c < kMaxHeadDim / 8; ++c) {
        if (c < hd / 8) raw[c] = krow[c];
      }
#pragma unroll
      for (int c = 0; c < kMaxHeadDim / 8; ++c) {
        if (c >= hd / 8) break;
        const __half2* h2 = reinterpret_cast<const __half2*>(&raw[c]);
        float kf[8];
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float2 f = __half22float2(h2[e]);
          kf[2 * e] = f.x;
          kf[2 * e + 1] = f.y;
        }
#pragma unroll
        for (int g = 0; g < kMaxGroup; ++g) {
          if (g < group) {
#pragma unroll
            for (int e = 0; e < 8; ++e) s[g] += q_s[g][8 * c + e] * kf[e];
          }
        }
      }
    }
#pragma unroll
    for (int g = 0; g < kMaxGroup; ++g) {
      if (g >= group) continue;
      float tile_max = j < end ? s[g] : -INFINITY;
      for (int off = 16; off > 0; off /= 2) tile_max = fmaxf(tile_max, __shfl_xor_sync(0xFFFFFFFFu, tile_max, off));
      const float new_m = fmaxf(m[g], tile_max);
      const float correction = __expf(m[g] - new_m);
      const float pj = j < end ? __expf(s[g] - new_m) : 0.0f;
      float tile_sum = pj;
      for (int off = 16; off > 0; off /= 2) tile_sum += __shfl_xor_sync(0xFFFFFFFFu, tile_sum, off);
      l[g] = l[g] * correction + tile_sum;
      m[g] = new_m;
#pragma unroll
      for (int d = 0; d < kDimsPerLane; ++d) o[g][d] *= correction;
      p_s[warp][g][lane] = pj;
    }
    __syncwarp();
    // Values: lane l owns dims 4l..4l+3. The value rows of half a tile are requested before the
    // first is used (one memory latency per 16 keys instead of one per key; 32 at once would
    // cost 32 more registers, halving the CTAs per SM of long prompts).
    const int keys = min(32, end - tile);
    for (int k0 = 0; k0 < keys; k0 += kValuesInFlight) {
      uint2 vraw[kValuesInFlight];
#pragma unroll
      for (int jj = 0; jj < kValuesInFlight; ++jj) {
        const int64_t key_slot = __shfl_sync(0xFFFFFFFFu, slot, k0 + jj);
        if (k0 + jj < keys && lane_has_dims) {
          vraw[jj] = *reinterpret_cast<const uint2*>(value_cache + key_slot * kv_dim + kv_head * hd + 4 * lane);
        }
      }
#pragma unroll
      for (int jj = 0; jj < kValuesInFlight; ++jj) {
        if (k0 + jj >= keys || !lane_has_dims) break;
        const __half2* h2 = reinterpret_cast<const __half2*>(&vraw[jj]);
        const float2 v01 = __half22float2(h2[0]), v23 = __half22float2(h2[1]);
#pragma unroll
        for (int g = 0; g < kMaxGroup; ++g) {
          if (g < group) {
            const float pj = p_s[warp][g][k0 + jj];
            o[g][0] += pj * v01.x;
            o[g][1] += pj * v01.y;
            o[g][2] += pj * v23.x;
            o[g][3] += pj * v23.y;
          }
        }
      }
    }
    __syncwarp();
  }

  // Merge the warps: each writes its state, then the block rescales to the common max.
#pragma unroll
  for (int g = 0; g < kMaxGroup; ++g) {
    if (g >= group) continue;
    if (lane == 0) {
      m_s[warp][g] = m[g];
      l_s[warp][g] = l[g];
    }
    if (lane_has_dims) {
#pragma unroll
      for (int d = 0; d < kDimsPerLane; ++d) o_s[warp][g][4 * lane + d] = o[g][d];
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < group * hd; i += blockDim.x) {
    const int g = i / hd, d = i % hd;
    float mx = -INFINITY;
    for (int w = 0; w < kAttnWarps; ++w) mx = fmaxf(mx, m_s[w][g]);
    float sum_l = 0.0f, sum_o = 0.0f;
    if (mx != -INFINITY) {
      for (int w = 0; w < kAttnWarps; ++w) {
        const float f = __expf(m_s[w][g] - mx);
        sum_l += l_s[w][g] * f;
        sum_o += o_s[w][g][d] * f;
      }
    }
    const int head = kv_head * group + g;
    if (splits == 1) {
      const int64_t at = static_cast<int64_t>(t) * p.head_count * hd + head * hd + d;
      out[at] = sum_o / sum_l;
      // head_dim % 32 == 0: i runs over whole warps and a warp's 32 values are one block.
      if (quantized.q != nullptr) {
        store_q8_block(sum_o / sum_l, at / 32, quantized.q, reinterpret_cast<float2*>(quantized.ds));
      }
    } else {
      const int64_t part = (static_cast<int64_t>(t) * splits + split) * p.head_count + head;
      partial_o[part * hd + d] = sum_o;
      if (d == 0) {
        partial_ml[2 * part] = mx;
        partial_ml[2 * part + 1] = sum_l;
      }
    }
  }
}

// Grid (tokens, heads): merges the splits' partial states.
__global__ void attention_merge_kernel(AttentionParams p, int splits,
                                       const float* __restrict__ partial_o,
                                       const float* __restrict__ partial_ml, float* out,
                                       ActivationsQ8 quantized) {
  wait_then_allow_next_kernel();
  const int t = blockIdx.x, head = blockIdx.y, hd = p.head_dim;
  float mx = -INFINITY;
  for (int s = 0; s < splits; ++s) {
    mx = fmaxf(mx, partial_ml[2 * ((static_cast<int64_t>(t) * splits + s) * p.head_count + head)]);
  }
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float sum_l = 0.0f, sum_o = 0.0f;
    for (int s = 0; s < splits; ++s) {
      const int64_t part = (static_cast<int64_t>(t) * splits + s) * p.head_count + head;
      const float ms = partial_ml[2 * part];
      if (ms == -INFINITY) continue;  // an empty split
      const float f = __expf(ms - mx);
      sum_l += partial_ml[2 * part + 1] * f;
      sum_o += partial_o[part * hd + d] * f;
    }
    const int64_t at = static_cast<int64_t>(t) * p.head_count * hd + head * hd + d;
    out[at] = sum_o / sum_l;
    if (quantized.q != nullptr) {  // head_dim % 32 == 0: whole warps, one block each
      store_q8_block(sum_o / sum_l, at / 32, quantized.q, reinterpret_cast<float2*>(quantized.ds));
    }
  }
}

__global__ void swiglu_kernel(const float* __restrict__ gate, float* up, int64_t n,
                              ActivationsQ8 quantized) {
  wait_then_allow_next_kernel();
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) {  // n % 32 == 0 when quantizing: whole warps pass or fail together
    const float g = gate[i];
    const float v = g / (1.0f + expf(-g)) * up[i];
    up[i] = v;
    if (quantized.q != nullptr) store_q8_block(v, i / 32, quantized.q, reinterpret_cast<float2*>(quantized.ds));
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
               int64_t tokens, float epsilon, bool layer_norm, ActivationsQ8 quantized,
               cudaStream_t stream) {
  if (tokens == 0) return;
  const unsigned grid = static_cast<unsigned>(tokens);
  const int w = static_cast<int>(width);
  if (width % 4 == 0) {
    launch(norm_kernel<4>, grid, kNormThreads, stream, x, weight, bias, out, w, epsilon, layer_norm, quantized);
  } else {
    launch(norm_kernel<1>, grid, kNormThreads, stream, x, weight, bias, out, w, epsilon, layer_norm,
                                                      ActivationsQ8{});
  }
}

void gather_rows(const float* x, const int32_t* rows, int64_t count, int64_t width, float* out,
                 cudaStream_t stream) {
  if (count == 0) return;
  launch(gather_kernel, static_cast<unsigned>(count), 256, stream, x, rows, width, out);
}

void rope_and_store_kv(const RopeParams& p, float* q, const float* k, const float* v,
                       const int32_t* positions, const int32_t* slots, int64_t tokens,
                       void* key_cache, void* value_cache, cudaStream_t stream) {
  if (tokens == 0) return;
  launch(rope_kv_kernel, static_cast<unsigned>(tokens), 256, stream, 
      p, q, k, v, positions, slots, static_cast<__half*>(key_cache),
      static_cast<__half*>(value_cache));
}

void attention(const AttentionParams& p, const float* q, const void* key_cache,
               const void* value_cache, const int32_t* positions, const int32_t* seq_rows,
               const int32_t* block_tables, const int32_t* table_stride, int64_t tokens,
               int splits, float* partial_o, float* partial_ml, float* out, ActivationsQ8 quantized,
               cudaStream_t stream) {
  if (tokens == 0) return;
  const dim3 grid(static_cast<unsigned>(tokens), static_cast<unsigned>(p.head_count_kv),
                  static_cast<unsigned>(splits));
  launch(attention_kernel, grid, kAttnWarps * 32, stream, 
      p, q, static_cast<const __half*>(key_cache), static_cast<const __half*>(value_cache),
      positions, seq_rows, block_tables, table_stride, partial_o, partial_ml, out,
      splits == 1 ? quantized : ActivationsQ8{});
  if (splits > 1) {
    launch(attention_merge_kernel, dim3(static_cast<unsigned>(tokens), static_cast<unsigned>(p.head_count)), 128, stream, p, splits, partial_o, partial_ml, out,
                                                                 quantized);
  }
}

void swiglu(const float* gate, float* up, int64_t n, ActivationsQ8 quantized, cudaStream_t stream) {
  if (n > 0) launch(swiglu_kernel, blocks_for(n, 256), 256, stream, gate, up, n, quantized);
}

void gelu(float* x, int64_t n, cudaStream_t stream) {
  if (n > 0) launch(gelu_kernel, blocks_for(n, 256), 256, stream, x, n);
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
