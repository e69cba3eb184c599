// Causal FlashAttention-2 (Dao 2023, arXiv:2307.08691) for the query tiles of a step: up to
// flash_tile_tokens(group) consecutive tokens of one sequence against that sequence's keys and
// values in the paged float16 cache (kernels.h, `attention`, which launches it).
//
// One CTA of 8 warps per (tile, KV head, key range). The tile's query rows (token-major: row r is
// token r / group, query head kv_head * group + r % group, so that one CTA serves every query head
// of the KV head and each staged key row is read by all of them) are 16 per warp: warp w owns the
// m16 row tile [16 w, 16 w + 16) and keeps its queries as mma A fragments in registers (float16,
// pre-scaled by scale * log2(e) so that the softmax works in base 2). The key range is walked in
// blocks of 64 keys; each block's key and value rows (gathered through the block table, 16 bytes
// per cp.async) are staged one block ahead into the other of two shared-memory buffers. Per block
// a warp computes S = Q K^T (16 x 64, float32) with mma.m16n8k16 on ldmatrix'd key rows, masks keys
// past its rows' positions (causal) or past the range, updates its rows' running max and sum
// (online softmax, Milakov & Gimelshein 2018) and rescales O, then adds P V with P rounded to
// float16 and the value rows read transposed by ldmatrix.trans. A warp whose rows all precede the
// block skips it. The end writes O / l, or with a split key range the unnormalized O, the max (in
// natural log units) and the sum for the merge kernel (attention.cu).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>

#include "backend/cuda/async_copy.cuh"
#include "backend/cuda/flash_attention.h"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/mma.cuh"

namespace realizar::cuda {
namespace {

constexpr int kWarps = kFlashTileRows / 16;  // each warp owns one m16 tile of query rows
constexpr int kThreads = 32 * kWarps;
constexpr int kKeys = 64;  // keys per block of the loop
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// A CTA's staging buffers: two blocks of kKeys key and value rows of kDim float16 columns (head_dim
// real ones, the rest kept zero). Rows are padded by 16 bytes, so that the 8 rows an ldmatrix
// reads start on distinct 16-byte bank groups (row stride = 16 mod 128 bytes for kDim = 32 .. 128).
template <int kDim>
struct FlashShared {
  static constexpr int kStride = kDim + 8;
  __half keys[2][kKeys][kStride];
  __half values[2][kKeys][kStride];
};

struct FlashArgs {
  AttentionParams p;
  const float* q;
  const __half* keys;
  const __half* values;
  AttentionStep step;
  int tile_tokens;  // flash_tile_tokens(group): the scratch rows of a tile
  float* partial_o;
  float* partial_ml;
  float* out;
  __half* half_out;  // may be null
};

// 2^x (PTX ex2.approx, relative error 2^-22; 2^-inf = 0).
__device__ __forceinline__ float exp2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// The query rows one thread holds in the mma fragments: rows g and g + 8 of its warp's tile.
struct QueryRows {
  int token[2];     // index in the tile
  int head[2];      // query head
  int position[2];  // position in the sequence: the last key the row sees
  bool valid[2];    // inside the tile (rows past count * group are computed but never written)
};

template <int kDim>
__global__ void __launch_bounds__(kThreads, kDim <= 64 ? 2 : 1) flash_attention_kernel(FlashArgs a) {
  constexpr int kSteps = kDim / 16;     // k-steps of Q K^T over the head dims
  constexpr int kDimTiles = kDim / 8;   // n8 tiles of O over the head dims
  constexpr int kKeyTiles = kKeys / 8;  // n8 tiles of S over the block's keys
  constexpr int kPieces = kDim / 8;     // 16-byte pieces of a staged row
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  FlashShared<kDim>& sm = *reinterpret_cast<FlashShared<kDim>*>(shared_bytes);
  const AttentionParams& p = a.p;
  const int hd = p.head_dim, group = p.head_count / p.head_count_kv, kv_dim = p.head_count_kv * hd;
  const int pieces = hd / 8;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, c = 2 * (lane % 4);  // fragment row and column (mma.cuh)

  // Columns [head_dim, kDim) stay zero: no copy writes them, and a NaN left there by an earlier
  // kernel times the queries' zero padding would poison S.
  if (pieces < kPieces) {
    for (int i = threadIdx.x; i < 2 * kKeys * (kPieces - pieces); i += kThreads) {
      const int row = i / (kPieces - pieces), piece = pieces + i % (kPieces - pieces);
      *reinterpret_cast<uint4*>(&sm.keys[row / kKeys][row % kKeys][8 * piece]) = make_uint4(0, 0, 0, 0);
      *reinterpret_cast<uint4*>(&sm.values[row / kKeys][row % kKeys][8 * piece]) = make_uint4(0, 0, 0, 0);
    }
  }
  wait_then_allow_next_kernel();

  const int tile_index = gridDim.x - 1 - blockIdx.x;  // later tiles (more keys) start first
  const int4 tile = reinterpret_cast<const int4*>(a.step.tiles)[tile_index];
  const int first_token = tile.x, count = tile.y, first_position = tile.w;
  if (count < 1 || count > a.tile_tokens) __trap();  // the step packer makes no such tile
  const int kv_head = blockIdx.y, split = blockIdx.z, splits = gridDim.z;
  const int rows = count * group;
  // Keys [begin, end): the split's share of [0, last position + 1), whole blocks each.
  const int length = first_position + count;
  const int range = ((length + splits - 1) / splits + kKeys - 1) / kKeys * kKeys;
  const int begin = split * range, end = min(length, begin + range);

  QueryRows qr;
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int r = 16 * warp + g + 8 * i;
    qr.valid[i] = r < rows;
    const int clamped = min(r, rows - 1);
    qr.token[i] = clamped / group;
    qr.head[i] = kv_head * group + clamped % group;
    qr.position[i] = first_position + qr.token[i];
  }
  const bool warp_active = 16 * warp < rows;
  const int warp_first_position = first_position + min(16 * warp, rows - 1) / group;
  const int warp_last_position = first_position + min(16 * warp + 15, rows - 1) / group;

  // The warp's queries as A fragments: register i + 2h of k-step ks holds row g + 8i, dims
  // 16 ks + c + 8h and + 1.
  uint32_t qf[kSteps][4];
  const float q_scale = p.scale * kLog2e;
#pragma unroll
  for (int ks = 0; ks < kSteps; ++ks) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const int dim = 16 * ks + c + 8 * h;
        float2 v = make_float2(0.0f, 0.0f);
        if (warp_active && dim < hd) {
          const int64_t row = static_cast<int64_t>(first_token + qr.token[i]) * p.head_count + qr.head[i];
          v = *reinterpret_cast<const float2*>(a.q + row * hd + dim);
        }
        qf[ks][i + 2 * h] = pack_half2(v.x * q_scale, v.y * q_scale);
      }
    }
  }

  const int32_t* table = a.step.block_tables + static_cast<int64_t>(tile.z) * (*a.step.table_stride);
  const __half* keys = a.keys + kv_head * hd;
  const __half* values = a.values + kv_head * hd;
  // Key and value rows [k0, k0 + kKeys) into `buffer`: rows at or past `end` are zeroed (a zero
  // value row times a zero probability stays zero; stale bits could be NaN).
  const auto stage = [&](int k0, int buffer) {
    const int keys_here = min(kKeys, end - k0);
    for (int i = threadIdx.x; i < kKeys * kPieces; i += kThreads) {
      const int r = i / kPieces, piece = i % kPieces;
      if (piece >= pieces) continue;
      __half* key_row = &sm.keys[buffer][r][8 * piece];
      __half* value_row = &sm.values[buffer][r][8 * piece];
      if (r < keys_here) {
        const int j = k0 + r;
        const int64_t slot = static_cast<int64_t>(table[j / p.block_size]) * p.block_size + j % p.block_size;
        cp_async16(key_row, keys + slot * kv_dim + 8 * piece);
        cp_async16(value_row, values + slot * kv_dim + 8 * piece);
      } else {
        *reinterpret_cast<uint4*>(key_row) = make_uint4(0, 0, 0, 0);
        *reinterpret_cast<uint4*>(value_row) = make_uint4(0, 0, 0, 0);
      }
    }
  };

  float o[kDimTiles][4] = {};
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  const int blocks = begin < end ? (end - begin + kKeys - 1) / kKeys : 0;
  const int matrix = lane / 8, matrix_row = lane % 8;  // the ldmatrix row address this lane passes
  if (blocks > 0) stage(begin, 0);
  cp_async_commit();
  for (int b = 0; b < blocks; ++b) {
    const int k0 = begin + b * kKeys, buffer = b & 1;
    if (b + 1 < blocks) stage(k0 + kKeys, buffer ^ 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();  // block b staged by every thread
    if (warp_active && k0 <= warp_last_position) {
      // S = Q K^T: ldmatrix matrices 0, 1 are key tile nt's dims [16 ks, +8) and [16 ks + 8, +8),
      // matrices 2, 3 the same for key tile nt + 1.
      float s[kKeyTiles][4] = {};
#pragma unroll
      for (int ks = 0; ks < kSteps; ++ks) {
#pragma unroll
        for (int nt = 0; nt < kKeyTiles; nt += 2) {
          uint32_t kb[4];
          ldmatrix_x4(kb, &sm.keys[buffer][8 * (nt + matrix / 2) + matrix_row][16 * ks + 8 * (matrix % 2)]);
          mma_f16(s[nt], qf[ks], kb[0], kb[1]);
          mma_f16(s[nt + 1], qf[ks], kb[2], kb[3]);
        }
      }
      if (k0 + kKeys > end || k0 + kKeys - 1 > warp_first_position) {  // some key is masked
#pragma unroll
        for (int nt = 0; nt < kKeyTiles; ++nt) {
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int key = k0 + 8 * nt + c + (e & 1);
            if (key >= end || key > qr.position[e / 2]) s[nt][e] = -INFINITY;
          }
        }
      }
      // Online softmax of rows g (i = 0: elements 0, 1) and g + 8 (i = 1: elements 2, 3); the 4
      // lanes of a quad hold one row's 64 scores.
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        float block_max = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < kKeyTiles; ++nt) block_max = fmaxf(block_max, fmaxf(s[nt][2 * i], s[nt][2 * i + 1]));
        block_max = fmaxf(block_max, __shfl_xor_sync(0xFFFFFFFFu, block_max, 1));
        block_max = fmaxf(block_max, __shfl_xor_sync(0xFFFFFFFFu, block_max, 2));
        const float new_max = fmaxf(m[i], block_max);
        const float base = new_max == -INFINITY ? 0.0f : new_max;  // a row with no key yet: all zeros
        const float correction = exp2_approx(m[i] - base);
        m[i] = new_max;
        float sum = 0.0f;
#pragma unroll
        for (int nt = 0; nt < kKeyTiles; ++nt) {
          s[nt][2 * i] = exp2_approx(s[nt][2 * i] - base);
          s[nt][2 * i + 1] = exp2_approx(s[nt][2 * i + 1] - base);
          sum += s[nt][2 * i] + s[nt][2 * i + 1];
        }
        l[i] = l[i] * correction + sum;
#pragma unroll
        for (int nd = 0; nd < kDimTiles; ++nd) {
          o[nd][2 * i] *= correction;
          o[nd][2 * i + 1] *= correction;
        }
      }
      // O += P V: P's A fragment of k-step kk is S tiles 2 kk and 2 kk + 1; ldmatrix.trans
      // matrices 0, 1 are keys [16 kk, +8) and [16 kk + 8, +8) of dim tile nd, 2, 3 of nd + 1.
#pragma unroll
      for (int kk = 0; kk < kKeys / 16; ++kk) {
        const uint32_t pa[4] = {pack_half2(s[2 * kk][0], s[2 * kk][1]), pack_half2(s[2 * kk][2], s[2 * kk][3]),
                                pack_half2(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                pack_half2(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
        for (int nd = 0; nd < kDimTiles; nd += 2) {
          uint32_t vb[4];
          ldmatrix_x4_trans(vb, &sm.values[buffer][16 * kk + 8 * (matrix % 2) + matrix_row][8 * (nd + matrix / 2)]);
          mma_f16(o[nd], pa, vb[0], vb[1]);
          mma_f16(o[nd + 1], pa, vb[2], vb[3]);
        }
      }
    }
    __syncthreads();  // every warp is done with `buffer` before block b + 2 is staged into it
  }

#pragma unroll
  for (int i = 0; i < 2; ++i) {  // the quad's partial sums of each row
    l[i] += __shfl_xor_sync(0xFFFFFFFFu, l[i], 1);
    l[i] += __shfl_xor_sync(0xFFFFFFFFu, l[i], 2);
  }
  if (!warp_active) return;
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    if (!qr.valid[i]) continue;
    const int token = first_token + qr.token[i], head = qr.head[i];
    if (splits == 1) {  // every row sees key 0: l > 0
      const float inverse = 1.0f / l[i];
      const int64_t at = (static_cast<int64_t>(token) * p.head_count + head) * hd;
#pragma unroll
      for (int nd = 0; nd < kDimTiles; ++nd) {
        const int dim = 8 * nd + c;
        if (dim >= hd) break;
        const float2 v = make_float2(o[nd][2 * i] * inverse, o[nd][2 * i + 1] * inverse);
        *reinterpret_cast<float2*>(a.out + at + dim) = v;
        if (a.half_out != nullptr) *reinterpret_cast<uint32_t*>(a.half_out + at + dim) = pack_half2(v.x, v.y);
      }
    } else {
      const int64_t part =
          (static_cast<int64_t>(tile_index * a.tile_tokens + qr.token[i]) * splits + split) * p.head_count + head;
#pragma unroll
      for (int nd = 0; nd < kDimTiles; ++nd) {
        const int dim = 8 * nd + c;
        if (dim >= hd) break;
        *reinterpret_cast<float2*>(a.partial_o + part * hd + dim) = make_float2(o[nd][2 * i], o[nd][2 * i + 1]);
      }
      if (lane % 4 == 0) {  // an empty range (or row) leaves -inf and 0: the merge gives it no weight
        a.partial_ml[2 * part] = m[i] == -INFINITY ? -INFINITY : m[i] * kLn2;
        a.partial_ml[2 * part + 1] = l[i];
      }
    }
  }
}

// Raises kernel's dynamic shared memory limit to `bytes`, once per process (the backend uses
// device 0 only). The call is not stream-ordered but may synchronize, which a thread capturing a
// graph in thread-local mode may not do: it is made in relaxed capture mode.
template <int kDim>
cudaError_t allow_shared_bytes(size_t bytes) {
  static const cudaError_t status = [bytes] {
    cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
    cudaThreadExchangeStreamCaptureMode(&mode);
    const cudaError_t set = cudaFuncSetAttribute(flash_attention_kernel<kDim>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                 static_cast<int>(bytes));
    cudaThreadExchangeStreamCaptureMode(&mode);
    return set;
  }();
  return status;
}

template <int kDim>
void launch_tiles(const FlashArgs& args, dim3 grid, cudaStream_t stream) {
  constexpr size_t kBytes = sizeof(FlashShared<kDim>);
  check_launch(allow_shared_bytes<kDim>(kBytes), "flash_attention_kernel (shared memory limit)");
  check_launch(launch_with_shared(flash_attention_kernel<kDim>, grid, kThreads, kBytes, stream, args),
               "flash_attention_kernel");
}

}  // namespace

void enqueue_flash_attention(const AttentionParams& p, const float* q, const void* key_cache,
                             const void* value_cache, const AttentionStep& step, int64_t tiles, int splits,
                             const AttentionScratch& scratch, float* out, void* half_out, cudaStream_t stream) {
  const FlashArgs args{p,
                       q,
                       static_cast<const __half*>(key_cache),
                       static_cast<const __half*>(value_cache),
                       step,
                       flash_tile_tokens(p.head_count / p.head_count_kv),
                       scratch.partial_o,
                       scratch.partial_ml,
                       out,
                       static_cast<__half*>(half_out)};
  const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(p.head_count_kv), static_cast<unsigned>(splits));
  with_padded_head_dim(p.head_dim, "attention (tiles)",
                       [&](auto dim) { launch_tiles<decltype(dim)::value>(args, grid, stream); });
}

}  // namespace realizar::cuda
