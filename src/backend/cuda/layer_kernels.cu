// Per-token kernels of a transformer layer: normalization, RoPE with the KV cache write, paged
// GQA attention (flash-decoding splits), activations. Formulas as in the reference backend
// (src/backend/reference/reference_backend.cpp), float32 arithmetic.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <type_traits>

#include "backend/cuda/async_copy.cuh"
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
                bool layer_norm, InputCopy copy) {
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

constexpr int kMaxGroup = 8;  // query heads per KV head
constexpr int kChunk = 32;    // keys per step of a warp: lane j scores key j

// Grid (tokens, KV heads, splits), one warp per query head of the KV head's group; each warp keeps
// its own online softmax (Milakov & Gimelshein 2018) over the split's keys, in chunks of 32. The
// CTA stages each chunk's key and value rows in shared memory with cp.async one chunk ahead, and
// every warp of the group reads them there: one copy of the rows per CTA instead of one per query
// head, and the next chunk's loads in flight while this one is computed. Per chunk, lane j dots
// key j's row with the query; then lane l accumulates dims [kDims l, kDims l + kDims) over the
// chunk's values. kDims = ceil(head_dim / 32). Measured on the H200 (docs/perf-notes.md): the
// previous version, each warp loading its rows from global memory itself, ran the 7B parallel-32
// step's attention (576 keys) at 364 GB/s, 27 % of the step.
// kDims consecutive float16 values of a row (2 kDims-byte aligned for kDims = 1, 2, 4), loaded in
// one instruction where the alignment allows.
template <int kDims>
struct HalfDims {
  using Raw = std::conditional_t<kDims == 4, uint2, std::conditional_t<kDims == 2, uint32_t, uint16_t>>;
  static constexpr int kLoads = kDims == 3 ? 3 : 1;
  Raw raw[kLoads];
  // `count` of the kDims values exist (a lane past head_dim has none).
  __device__ void load(const __half* p, int count) {
    if constexpr (kDims == 3) {
#pragma unroll
      for (int d = 0; d < 3; ++d) raw[d] = d < count ? *reinterpret_cast<const uint16_t*>(p + d) : 0;
    } else {
      raw[0] = count > 0 ? *reinterpret_cast<const Raw*>(p) : Raw{};
    }
  }
  __device__ float at(int d) const {
    const __half_raw h{reinterpret_cast<const uint16_t*>(raw)[d]};
    return __half2float(__half(h));
  }
};

template <int kDims>
__global__ void __launch_bounds__(kMaxGroup * 32)
    attention_kernel(AttentionParams p, const float* __restrict__ q, const __half* key_cache,
                     const __half* value_cache, const int32_t* __restrict__ positions,
                     const int32_t* __restrict__ seq_rows, const int32_t* __restrict__ block_tables,
                     const int32_t* __restrict__ table_stride, float* partial_o,
                     float* partial_ml, float* out, InputCopy copy) {
  constexpr int kMaxDim = 32 * kDims;
  // Key rows padded by 16 bytes: the 16-byte reads of lanes j = 0..7 (one row each, same column)
  // then fall on distinct banks.
  constexpr int kKeyStride = kMaxDim + 8;
  __shared__ __align__(16) float q_s[kMaxGroup][kMaxDim];
  __shared__ __align__(16) __half keys_s[2][kChunk][kKeyStride];
  __shared__ __align__(16) __half values_s[2][kChunk][kMaxDim];
  wait_then_allow_next_kernel();
  const int t = blockIdx.x, kv_head = blockIdx.y, split = blockIdx.z, splits = gridDim.z;
  const int group = p.head_count / p.head_count_kv, hd = p.head_dim;
  const int kv_dim = p.head_count_kv * hd;
  const int g = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int head = kv_head * group + g;
  const int length = positions[t] + 1;
  const int range = (length + splits - 1) / splits;
  const int begin = split * range, end = min(length, begin + range);
  const int32_t* table = block_tables + static_cast<int64_t>(seq_rows[t]) * (*table_stride);
  const float* qh = q + static_cast<int64_t>(t) * p.head_count * hd + head * hd;
  for (int d = lane; d < hd; d += 32) q_s[g][d] = qh[d] * p.scale;

  const __half* keys = key_cache + kv_head * hd;
  const __half* values = value_cache + kv_head * hd;
  // Rows [chunk, chunk + 32) clipped to the split, 16 bytes per copy (head_dim % 8 == 0).
  const int row_pieces = hd / 8;
  const auto stage = [&](int chunk, int buffer) {
    const int rows = min(kChunk, end - chunk);
    for (int i = threadIdx.x; i < rows * row_pieces; i += blockDim.x) {
      const int r = i / row_pieces, c = 8 * (i % row_pieces), j = chunk + r;
      const int64_t slot = static_cast<int64_t>(table[j / p.block_size]) * p.block_size + j % p.block_size;
      cp_async16(&keys_s[buffer][r][c], keys + slot * kv_dim + c);
      cp_async16(&values_s[buffer][r][c], values + slot * kv_dim + c);
    }
  };

  const int first_dim = kDims * lane;
  const int dims_here = max(0, min(kDims, hd - first_dim));
  float m = -INFINITY, l = 0.0f, o[kDims] = {};
  const int chunks = max(0, (end - begin + kChunk - 1) / kChunk);
  if (chunks > 0) stage(begin, 0);
  cp_async_commit();
  for (int c = 0; c < chunks; ++c) {
    const int chunk = begin + c * kChunk, buffer = c % 2;
    if (c + 1 < chunks) stage(chunk + kChunk, buffer ^ 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();  // chunk c (and, the first time, q_s) visible to every warp
    const int j = chunk + lane;
    // Score of key j.
    float s = -INFINITY;
    if (j < end) {
      const uint4* krow = reinterpret_cast<const uint4*>(keys_s[buffer][lane]);
      float dot = 0.0f;
#pragma unroll
      for (int piece = 0; piece < kMaxDim / 8; ++piece) {
        if (piece >= row_pieces) break;
        const uint4 raw = krow[piece];
        const float4 q0 = *reinterpret_cast<const float4*>(&q_s[g][8 * piece]);
        const float4 q1 = *reinterpret_cast<const float4*>(&q_s[g][8 * piece + 4]);
        const __half2* h2 = reinterpret_cast<const __half2*>(&raw);
        const float2 k0 = __half22float2(h2[0]), k1 = __half22float2(h2[1]);
        const float2 k2 = __half22float2(h2[2]), k3 = __half22float2(h2[3]);
        dot += q0.x * k0.x + q0.y * k0.y + q0.z * k1.x + q0.w * k1.y +
               q1.x * k2.x + q1.y * k2.y + q1.z * k3.x + q1.w * k3.y;
      }
      s = dot;
    }
    // Online softmax over the chunk.
    float chunk_max = s;
#pragma unroll
    for (int off = 16; off > 0; off /= 2) chunk_max = fmaxf(chunk_max, __shfl_xor_sync(0xFFFFFFFFu, chunk_max, off));
    const float new_m = fmaxf(m, chunk_max);
    const float correction = __expf(m - new_m);
    const float pj = j < end ? __expf(s - new_m) : 0.0f;
    float chunk_sum = pj;
#pragma unroll
    for (int off = 16; off > 0; off /= 2) chunk_sum += __shfl_xor_sync(0xFFFFFFFFu, chunk_sum, off);
    l = l * correction + chunk_sum;
    m = new_m;
#pragma unroll
    for (int d = 0; d < kDims; ++d) o[d] *= correction;
    // Values of the chunk's keys: lane l's dims of every row.
    const int keys_here = min(kChunk, end - chunk);
#pragma unroll
    for (int jj = 0; jj < kChunk; ++jj) {
      const float pk = __shfl_sync(0xFFFFFFFFu, pj, jj);
      if (jj < keys_here) {
        HalfDims<kDims> v;
        v.load(&values_s[buffer][jj][first_dim], dims_here);
#pragma unroll
        for (int d = 0; d < kDims; ++d) o[d] += pk * v.at(d);
      }
    }
    __syncthreads();  // every warp is done with `buffer` before chunk c + 2 is staged into it
  }

  if (splits == 1) {
    const int64_t at = static_cast<int64_t>(t) * p.head_count * hd + head * hd + first_dim;
    float v[kDims];
#pragma unroll
    for (int d = 0; d < kDims; ++d) {
      v[d] = o[d] / l;
      if (first_dim + d < hd) out[at + d] = v[d];
      if (first_dim + d < hd && copy.half != nullptr) store_half(v[d], copy.half, at + d);
    }
    // head_dim == 32 kDims: the warp's values are whole 32-value blocks, 32 / kDims lanes each.
    if constexpr (kDims != 3) {
      if (copy.q8.q != nullptr) {
        store_q8_block<kDims>(v, at / 32, copy.q8.q, reinterpret_cast<float2*>(copy.q8.ds));
      }
    }
  } else {
    const int64_t part = (static_cast<int64_t>(t) * splits + split) * p.head_count + head;
#pragma unroll
    for (int d = 0; d < kDims; ++d) {
      if (first_dim + d < hd) partial_o[part * hd + first_dim + d] = o[d];
    }
    if (lane == 0) {
      partial_ml[2 * part] = m;
      partial_ml[2 * part + 1] = l;
    }
  }
}

// Grid (tokens, heads): merges the splits' partial states.
__global__ void attention_merge_kernel(AttentionParams p, int splits,
                                       const float* __restrict__ partial_o,
                                       const float* __restrict__ partial_ml, float* out,
                                       InputCopy copy) {
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
    if (copy.half != nullptr) store_half(sum_o / sum_l, copy.half, at);
    if (copy.q8.q != nullptr) {  // head_dim % 32 == 0: whole warps, one block each
      store_q8_block(sum_o / sum_l, at / 32, copy.q8.q, reinterpret_cast<float2*>(copy.q8.ds));
    }
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

void rope_and_store_kv(const RopeParams& p, float* q, const float* k, const float* v,
                       const int32_t* positions, const int32_t* slots, int64_t tokens,
                       void* key_cache, void* value_cache, cudaStream_t stream) {
  if (tokens == 0) return;
  check_launch(launch(rope_kv_kernel, static_cast<unsigned>(tokens), 256, stream, 
      p, q, k, v, positions, slots, static_cast<__half*>(key_cache),
      static_cast<__half*>(value_cache)), "rope_kv_kernel");
}

void attention(const AttentionParams& p, const float* q, const void* key_cache,
               const void* value_cache, const int32_t* positions, const int32_t* seq_rows,
               const int32_t* block_tables, const int32_t* table_stride, int64_t tokens,
               int splits, float* partial_o, float* partial_ml, float* out, InputCopy copy,
               cudaStream_t stream) {
  if (tokens == 0) return;
  const dim3 grid(static_cast<unsigned>(tokens), static_cast<unsigned>(p.head_count_kv),
                  static_cast<unsigned>(splits));
  const unsigned threads = static_cast<unsigned>(32 * (p.head_count / p.head_count_kv));
  // With splits the merge kernel writes the copy; the kernel's int8 blocks need head_dim = 32 kDims.
  const InputCopy fused = splits > 1 ? InputCopy{} : InputCopy{p.head_dim % 32 == 0 ? copy.q8 : ActivationsQ8{}, copy.half};
  const __half* keys = static_cast<const __half*>(key_cache);
  const __half* values = static_cast<const __half*>(value_cache);
  auto run = [&](auto kernel) {
    check_launch(launch(kernel, grid, threads, stream, p, q, keys, values, positions, seq_rows, block_tables,
           table_stride, partial_o, partial_ml, out, fused), "attention_kernel");
  };
  switch ((p.head_dim + 31) / 32) {
    case 1: run(attention_kernel<1>); break;
    case 2: run(attention_kernel<2>); break;
    case 3: run(attention_kernel<3>); break;
    case 4: run(attention_kernel<4>); break;
    default: unhandled_case("attention", "head_dim", p.head_dim);
  }
  if (splits > 1) {
    check_launch(launch(attention_merge_kernel, dim3(static_cast<unsigned>(tokens), static_cast<unsigned>(p.head_count)), 128,
           stream, p, splits, partial_o, partial_ml, out, copy), "attention_merge_kernel");
  }
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
