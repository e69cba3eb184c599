// Decode attention on the tensor cores (decode_attention.h: enqueue_decode_tensor_cores and its
// split plan, decode_splits): tokens that attend one by one against their sequence's keys in the
// paged float16 cache, built to stream keys and values near the memory bandwidth at long contexts
// (docs/perf-notes.md, "Decode attention at long contexts").
//
// One CTA of kWarps (kDecodeWarps, 4) warps per (token, KV head, key range). The group's query
// heads (at most 8) are the rows of one m16 tile, so one mma serves all of them and every key and
// value row is read once per CTA; rows 8-15 of the tile stay zero. The warps split the range:
// warp w takes the 16-key groups w, w + kWarps, w + 2 kWarps, ... and streams them through its own
// ring of kDecodeStages shared-memory buffers with cp.async, kDecodeStages - 1 groups in flight
// while one is computed, with no barrier but __syncwarp in the loop. Per group: S = Q K^T (one m16n16 tile,
// head_dim / 16 k-steps of mma.m16n8k16 on ldmatrix'd key rows), the online softmax of each head's
// row (Milakov & Gimelshein 2018; base 2, queries pre-scaled by scale * log2 e), O += P V (one
// k-step, P rounded to float16 straight from the S accumulators as in FlashAttention-2, Dao 2023,
// arXiv:2307.08691; value rows by ldmatrix.trans). At the end the warps' states are merged in
// shared memory (over the ring, which is no longer needed) into the output, or into the range's
// partial state for attention.cu's merge kernel.
//
// Why (measured on the H200, docs/perf-notes.md): the warp-per-head kernel before did every query
// head's dot products on the CUDA cores, 7 warps waiting on each staged chunk, and reached 949 GB/s
// at 16k keys (35.3 us per 7B layer); here the arithmetic per key is a few tensor-core
// instructions per warp, so the loop is bound by the bytes in flight, kWarps x (kDecodeStages - 1)
// groups of 8.5 KiB per CTA: 2.0 TB/s (16.6 us). 8 warps per CTA (one CTA per multiprocessor,
// half the splits) was 1 % faster at 1 token x 4k-16k keys, 14 % slower at 600 keys, and 20 %
// faster only for 32 tokens x 600 keys (15.0 against 18.7 us), ~2 % of such a step: not worth a
// second kernel.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include "backend/cuda/async_copy.cuh"
#include "backend/cuda/decode_attention.h"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/mma.cuh"
#include "backend/cuda/q8_block.cuh"

namespace realizar::cuda {
namespace {

constexpr int kWarps = kDecodeWarps;
constexpr int kMaxGroup = 8;  // query heads per KV head: rows g < 8 of the m16 tile
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// One group's key and value rows, kDim float16 columns each (head_dim real ones, the rest zero),
// rows padded by 16 bytes so that the 8 rows an ldmatrix reads start on distinct bank groups.
template <int kDim>
struct GroupRows {
  static constexpr int kStride = kDim + 8;
  __half keys[kDecodeGroupKeys][kStride];
  __half values[kDecodeGroupKeys][kStride];
};

// What a warp hands the CTA's merge, written over its ring: per query row, its unnormalized
// output (rows padded by 8 floats: the float2 stores of lanes g = 0..7 fall on distinct banks),
// running max (base 2) and sum.
template <int kDim>
struct WarpState {
  float o[kMaxGroup][kDim + 8];
  float m[kMaxGroup];
  float l[kMaxGroup];
};

struct DecodeArgs {
  AttentionParams p;
  const float* q;
  const __half* keys;
  const __half* values;
  AttentionStep step;
  float* partial_o;
  float* partial_ml;
  float* out;
  InputCopy copy;
};

template <int kDim>
__global__ void __launch_bounds__(32 * kWarps, decode_ctas_per_multiprocessor(kDim))
    decode_attention_mma_kernel(DecodeArgs a) {
  constexpr int kSteps = kDim / 16;    // k-steps of Q K^T over the head dims
  constexpr int kDimTiles = kDim / 8;  // n8 tiles of O over the head dims
  constexpr int kPieces = kDim / 8;    // 16-byte pieces of a staged row
  static_assert(sizeof(GroupRows<kDim>) * kDecodeStages * kWarps == decode_shared_bytes(kDim),
                "the plan's shared memory size (decode_attention.h) is the kernel's");
  static_assert(sizeof(WarpState<kDim>) <= sizeof(GroupRows<kDim>) * kDecodeStages, "the merge fits the ring");
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  GroupRows<kDim>* ring = reinterpret_cast<GroupRows<kDim>*>(shared_bytes) + warp * kDecodeStages;
  const AttentionParams& p = a.p;
  const int hd = p.head_dim, group = p.head_count / p.head_count_kv, kv_dim = p.head_count_kv * hd;
  const int pieces = hd / 8;
  const int g = lane / 4, c = 2 * (lane % 4);          // fragment row and column (mma.cuh)
  const int matrix = lane / 8, matrix_row = lane % 8;  // the ldmatrix row address this lane passes

  // Columns [head_dim, kDim) stay zero: no copy writes them, and a NaN left there by an earlier
  // kernel times the queries' zero padding would poison S.
  if (pieces < kPieces) {
    for (int i = lane; i < kDecodeStages * kDecodeGroupKeys * (kPieces - pieces); i += 32) {
      const int row = i / (kPieces - pieces), piece = pieces + i % (kPieces - pieces);
      GroupRows<kDim>& rows = ring[row / kDecodeGroupKeys];
      *reinterpret_cast<uint4*>(&rows.keys[row % kDecodeGroupKeys][8 * piece]) = make_uint4(0, 0, 0, 0);
      *reinterpret_cast<uint4*>(&rows.values[row % kDecodeGroupKeys][8 * piece]) = make_uint4(0, 0, 0, 0);
    }
  }

  // The step's inputs (launch.cuh: readable before the wait), the first table entries and the
  // first groups of keys written by earlier steps are read while the previous kernel finishes;
  // the queries and this step's keys only after it.
  const int x = blockIdx.x;
  const int t = a.step.decode_tokens != nullptr ? a.step.decode_tokens[x] : x;
  const int kv_head = blockIdx.y, split = blockIdx.z, splits = gridDim.z;
  // Keys [begin, end): the split's share of [0, position + 1) in whole groups, so that a group
  // never straddles a cache block (block_size is a multiple of 16).
  const int length = a.step.positions[t] + 1;
  const int range = ((length + splits - 1) / splits + kDecodeGroupKeys - 1) / kDecodeGroupKeys * kDecodeGroupKeys;
  const int begin = split * range, end = min(length, begin + range);
  const int groups = begin < end ? (end - begin + kDecodeGroupKeys - 1) / kDecodeGroupKeys : 0;
  const int warp_groups = groups > warp ? (groups - warp + kWarps - 1) / kWarps : 0;
  const auto first_key = [&](int n) { return begin + kDecodeGroupKeys * (warp + kWarps * n); };  // of its n-th
  const int32_t* table = a.step.block_tables + static_cast<int64_t>(a.step.seq_rows[t]) * (*a.step.table_stride);
  // Lane i holds the table entries of the warp's groups window + i (entries) and window + 32 + i
  // (ahead), so that a group's copies wait on no load of their own and each window's loads are in
  // flight 32 groups before they are needed.
  const auto load_entries = [&](int first) {
    const int n = first + lane;
    return n < warp_groups ? table[first_key(n) / p.block_size] : 0;
  };
  int window = 0;
  int32_t entries = load_entries(0), ahead = load_entries(32);

  // The warp's n-th group into ring buffer `buffer`, 16 bytes per cp.async; rows at or past `end`
  // are zeroed (a zero value row times a zero probability stays zero; stale bits could be NaN).
  // Called by the whole warp with the same n, in increasing order.
  const auto stage = [&](int n, int buffer) {
    if (n >= window + 32) {
      window += 32;
      entries = ahead;
      ahead = load_entries(window + 32);
    }
    const int j0 = first_key(n), rows = min(kDecodeGroupKeys, end - j0);
    const int64_t slot = static_cast<int64_t>(__shfl_sync(0xFFFFFFFFu, entries, n - window)) * p.block_size +
                         j0 % p.block_size;
    const __half* keys = a.keys + slot * kv_dim + kv_head * hd;
    const __half* values = a.values + slot * kv_dim + kv_head * hd;
    GroupRows<kDim>& to = ring[buffer];
#pragma unroll
    for (int k = 0; k < kDecodeGroupKeys * kPieces / 32; ++k) {
      const int r = (lane + 32 * k) / kPieces, piece = (lane + 32 * k) % kPieces;
      if (piece >= pieces) continue;
      if (r < rows) {
        cp_async16(&to.keys[r][8 * piece], keys + r * kv_dim + 8 * piece);
        cp_async16(&to.values[r][8 * piece], values + r * kv_dim + 8 * piece);
      } else {
        *reinterpret_cast<uint4*>(&to.keys[r][8 * piece]) = make_uint4(0, 0, 0, 0);
        *reinterpret_cast<uint4*>(&to.values[r][8 * piece]) = make_uint4(0, 0, 0, 0);
      }
    }
  };

  // The first groups are staged before the wait when every key in them was written by an earlier
  // step (AttentionStep::step_tokens): their loads overlap the Q/K/V product, which writes this
  // step's keys. One commit group per ring stage either way.
  const int settled_end = a.step.step_tokens > 0 ? length - static_cast<int>(a.step.step_tokens) : 0;
  int staged = 0;
#pragma unroll
  for (int n = 0; n < kDecodeStages - 1; ++n) {
    if (staged == n && n < warp_groups && first_key(n) + kDecodeGroupKeys <= settled_end) {
      stage(n, n);
      cp_async_commit();
      staged = n + 1;
    }
  }
  wait_then_allow_next_kernel();

  // Row g's queries as A fragments (registers 0 and 2; rows g + 8, registers 1 and 3, are zero):
  // qf[ks][h] holds dims 16 ks + c + 8 h and + 1. Rows past the group are zero too.
  uint32_t qf[kSteps][2];
  {
    const float q_scale = p.scale * kLog2e;
    const float* row = a.q + (static_cast<int64_t>(t) * p.head_count + kv_head * group + min(g, group - 1)) * hd;
#pragma unroll
    for (int ks = 0; ks < kSteps; ++ks) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int dim = 16 * ks + c + 8 * h;
        const float2 v = g < group && dim < hd ? *reinterpret_cast<const float2*>(row + dim) : make_float2(0.0f, 0.0f);
        qf[ks][h] = pack_half2(v.x * q_scale, v.y * q_scale);
      }
    }
  }

#pragma unroll
  for (int n = 0; n < kDecodeStages - 1; ++n) {
    if (n < staged) continue;
    if (n < warp_groups) stage(n, n);
    cp_async_commit();
  }
  float o[kDimTiles][4] = {};  // row g: elements 0, 1 (dims 8 nd + c, + 1); rows g + 8 stay zero
  float m = -INFINITY, l = 0.0f;  // row g's running max (base 2) and this lane's part of its sum
  for (int n = 0; n < warp_groups; ++n) {
    cp_async_wait<kDecodeStages - 2>();
    __syncwarp();  // group n staged by every lane; every lane done with group n - 1's buffer
    if (n + kDecodeStages - 1 < warp_groups) stage(n + kDecodeStages - 1, (n + kDecodeStages - 1) % kDecodeStages);
    cp_async_commit();
    const GroupRows<kDim>& rows = ring[n % kDecodeStages];
    const int j0 = first_key(n);

    // S = Q K^T: ldmatrix matrices 0, 1 are keys [0, 8) at dims [16 ks, +8) and [16 ks + 8, +8),
    // matrices 2, 3 the same for keys [8, 16); s[i] holds keys 8 i + c and + 1 of row g.
    float s[2][4] = {};
#pragma unroll
    for (int ks = 0; ks < kSteps; ++ks) {
      uint32_t kb[4];
      ldmatrix_x4(kb, &rows.keys[8 * (matrix / 2) + matrix_row][16 * ks + 8 * (matrix % 2)]);
      const uint32_t qa[4] = {qf[ks][0], 0u, qf[ks][1], 0u};
      mma_f16(s[0], qa, kb[0], kb[1]);
      mma_f16(s[1], qa, kb[2], kb[3]);
    }
    float score[4] = {s[0][0], s[0][1], s[1][0], s[1][1]};
    if (j0 + kDecodeGroupKeys > end) {  // the range's last group: keys past its end weigh nothing
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        if (j0 + 8 * (e / 2) + c + e % 2 >= end) score[e] = -INFINITY;
      }
    }
    // Online softmax of row g: the 4 lanes of a quad hold its 16 scores.
    float group_max = fmaxf(fmaxf(score[0], score[1]), fmaxf(score[2], score[3]));
    group_max = fmaxf(group_max, __shfl_xor_sync(0xFFFFFFFFu, group_max, 1));
    group_max = fmaxf(group_max, __shfl_xor_sync(0xFFFFFFFFu, group_max, 2));
    const float new_m = fmaxf(m, group_max);  // finite: key j0 < end is in the group
    const float correction = exp2f(m - new_m);
    m = new_m;
    float sum = 0.0f;
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      score[e] = exp2f(score[e] - new_m);
      sum += score[e];
    }
    l = l * correction + sum;
#pragma unroll
    for (int nd = 0; nd < kDimTiles; ++nd) {
      o[nd][0] *= correction;
      o[nd][1] *= correction;
    }
    // O += P V: P's A fragment is row g's probabilities of keys c, c + 1 and 8 + c, 9 + c;
    // ldmatrix.trans matrices 0, 1 are keys [0, 8) and [8, 16) of dim tile nd, 2, 3 of nd + 1.
    const uint32_t pa[4] = {pack_half2(score[0], score[1]), 0u, pack_half2(score[2], score[3]), 0u};
#pragma unroll
    for (int nd = 0; nd < kDimTiles; nd += 2) {
      uint32_t vb[4];
      ldmatrix_x4_trans(vb, &rows.values[8 * (matrix % 2) + matrix_row][8 * (nd + matrix / 2)]);
      mma_f16(o[nd], pa, vb[0], vb[1]);
      mma_f16(o[nd + 1], pa, vb[2], vb[3]);
    }
  }
  cp_async_wait<0>();
  l += __shfl_xor_sync(0xFFFFFFFFu, l, 1);  // the quad's parts of row g's sum
  l += __shfl_xor_sync(0xFFFFFFFFu, l, 2);
  __syncwarp();  // every lane done with the ring before it becomes the warp's state

  // Warp w's state over its ring.
  const auto state = [&](int w) -> WarpState<kDim>& {
    return *reinterpret_cast<WarpState<kDim>*>(reinterpret_cast<GroupRows<kDim>*>(shared_bytes) + w * kDecodeStages);
  };
  WarpState<kDim>& own = state(warp);
#pragma unroll
  for (int nd = 0; nd < kDimTiles; ++nd) {
    *reinterpret_cast<float2*>(&own.o[g][8 * nd + c]) = make_float2(o[nd][0], o[nd][1]);
  }
  if (c == 0) {
    own.m[g] = m;
    own.l[g] = l;
  }
  __syncthreads();

  // Warp w merges query rows w, w + kWarps, ...; lane i holds dims i, i + 32, ... of the row.
  for (int r = warp; r < group; r += kWarps) {
    float mx = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, state(w).m[r]);
    float weight[kWarps], total = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {  // a warp without keys weighs nothing (max -inf)
      weight[w] = mx == -INFINITY ? 0.0f : exp2f(state(w).m[r] - mx);
      total += weight[w] * state(w).l[r];
    }
    float v[kDim / 32];
#pragma unroll
    for (int k = 0; k < kDim / 32; ++k) {
      v[k] = 0.0f;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) v[k] += weight[w] * state(w).o[r][32 * k + lane];
    }
    const int head = kv_head * group + r;
    if (splits == 1) {  // the range holds key 0: total > 0
      const int64_t at = (static_cast<int64_t>(t) * p.head_count + head) * hd;
      const float inverse = 1.0f / total;
#pragma unroll
      for (int k = 0; k < kDim / 32; ++k) {
        const int dim = 32 * k + lane;
        v[k] *= inverse;
        if (dim < hd) {
          a.out[at + dim] = v[k];
          if (a.copy.half != nullptr) store_half(v[k], a.copy.half, at + dim);
        }
        // head_dim % 32 == 0 (the launcher's rule for int8 copies): block k of the row is whole.
        if (a.copy.q8.q != nullptr && 32 * k < hd) {
          store_q8_block(v[k], (at + 32 * k) / 32, a.copy.q8.q, reinterpret_cast<float2*>(a.copy.q8.ds));
        }
      }
    } else {  // an empty range leaves max -inf, sum 0 and zeros: the merge gives it no weight
      const int64_t part = (static_cast<int64_t>(x) * splits + split) * p.head_count + head;
#pragma unroll
      for (int k = 0; k < kDim / 32; ++k) {
        if (32 * k + lane < hd) a.partial_o[part * hd + 32 * k + lane] = v[k];
      }
      if (lane == 0) {
        a.partial_ml[2 * part] = mx == -INFINITY ? -INFINITY : mx * kLn2;
        a.partial_ml[2 * part + 1] = total;
      }
    }
  }
}

template <int kDim>
void launch_decode(const DecodeArgs& args, dim3 grid, cudaStream_t stream) {
  constexpr auto kKernel = decode_attention_mma_kernel<kDim>;
  constexpr size_t kBytes = decode_shared_bytes(kDim);
  check_launch(allow_dynamic_shared_bytes<kKernel>(kBytes), "decode_attention_mma_kernel (shared memory limit)");
  check_launch(launch_with_shared(kKernel, grid, 32 * kWarps, kBytes, stream, args), "decode_attention_mma_kernel");
}

}  // namespace

int decode_splits(const AttentionParams& p, int64_t tokens, int64_t max_length, int multiprocessors,
                  int64_t scratch_rows) {
  if (tokens < 1) return 1;
  const int64_t ctas = tokens * p.head_count_kv;
  // One wave of as many CTAs as fit: never a second, partial one.
  const int64_t target = int64_t{decode_ctas_per_multiprocessor(p.head_dim)} * std::max(multiprocessors, 1);
  constexpr int64_t kMinKeys = 2 * kDecodeGroupKeys * kWarps;
  if (ctas >= target || max_length <= kMinKeys) return 1;
  const int64_t splits = std::min({target / ctas, (max_length + kMinKeys - 1) / kMinKeys,
                                   int64_t{kMaxAttentionSplits}, scratch_rows / tokens});
  return static_cast<int>(std::max<int64_t>(splits, 1));
}

void enqueue_decode_tensor_cores(const AttentionParams& p, const float* q, const void* key_cache,
                                 const void* value_cache, const AttentionStep& step, int64_t tokens, int splits,
                                 const AttentionScratch& scratch, float* out, InputCopy copy, cudaStream_t stream) {
  const DecodeArgs args{p,
                        q,
                        static_cast<const __half*>(key_cache),
                        static_cast<const __half*>(value_cache),
                        step,
                        scratch.partial_o,
                        scratch.partial_ml,
                        out,
                        splits > 1 ? InputCopy{} : copy};  // with splits the merge writes the copy
  const dim3 grid(static_cast<unsigned>(tokens), static_cast<unsigned>(p.head_count_kv), static_cast<unsigned>(splits));
  with_padded_head_dim(p.head_dim, "attention (decode)",
                       [&](auto dim) { launch_decode<decltype(dim)::value>(args, grid, stream); });
}

}  // namespace realizar::cuda
