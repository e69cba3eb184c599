// Launchers of the CUDA backend's kernels. Plain C++17 (no CUDA syntax) so that both the .cu
// files (nvcc, C++17) and the backend class (g++, C++20) include it. Every pointer is device
// memory; every launcher enqueues on `stream` and returns without synchronizing. Activations are
// float32 row-major [tokens x width]; the KV cache is float16 [slot][kv_dim] per layer.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime_api.h>

namespace realizar::cuda {

// Whether the matrix kernels handle weights of ggml type id `type` (F32, F16, BF16, Q4_0, Q4_1,
// Q5_0, Q8_0, Q4_K, Q5_K, Q6_K) with rows of `cols` elements (cols must fill whole kernel units: a
// multiple of 32 for the quantized types, 8 for F16/BF16, 4 for F32).
bool matrix_type_supported(uint32_t type, int64_t cols);

// A weight matrix in ggml block layout: `rows` rows of `cols` elements, row r at
// data + r * row_bytes.
struct DeviceMatrix {
  uint32_t type = 0;  // ggml type id
  int64_t rows = 0;
  int64_t cols = 0;
  size_t row_bytes = 0;
  const uint8_t* data = nullptr;
  // The backend's float16 copy of the whole matrix ([rows x cols], row-major) when it keeps one
  // (CudaBackend::keep_half_copies); the kernels here read `data` only.
  const void* half = nullptr;
};

// y[t][r] = (accumulate ? y[t][r] : 0) + sum_c W[r][c] x[t][c] + (bias ? bias[r] : 0) for t < tokens.
// x: [tokens x ldx], y: [tokens x ldy]. Reads each weight byte once per 8 tokens (one warp per
// row, weights converted to float in registers). `tokens` any positive count. Used for the float
// types; the quantized types go through matvec_int8.
void matvec(const DeviceMatrix& w, const float* x, int64_t ldx, float* y, int64_t ldy,
            const float* bias, bool accumulate, int64_t tokens, cudaStream_t stream);

// Activations quantized to int8 in blocks of 32 consecutive values (ggml's q8_1 scheme):
// q [tokens x cols] int8 and ds [tokens x cols/32] float pairs {d, d * sum(q)}, with
// d = max|x| / 127 and q = round-to-nearest-even(x * (1 / d)) over each block (q = 0 when d = 0).
struct ActivationsQ8 {
  int8_t* q = nullptr;
  float* ds = nullptr;
};

// What a kernel that makes a linear layer's input also writes, so that no conversion pass runs
// before the layer: the input's int8 blocks (q8.q non-null; as quantize_activations would write
// them, for matvec_int8) and/or its float16 values (half non-null, round to nearest; for
// matmul_dequant_mma and the cuBLAS GEMMs). Both null: only the float32 output.
struct InputCopy {
  ActivationsQ8 q8;
  void* half = nullptr;
};

// Whether matvec_int8 handles weights of ggml type id `type` (Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q5_K,
// Q6_K); the float types (F32, F16, BF16) use matvec.
bool matvec_reads_int8(uint32_t type);

struct RopeParams {
  int head_count = 0;
  int head_count_kv = 0;
  int head_dim = 0;
  int rope_dim = 0;
  bool neox = false;            // pairs (i, i + rope_dim/2), else (2i, 2i+1)
  const double* inv_freq = nullptr;  // [rope_dim / 2]: rope_freq_base^(-2i / rope_dim)
};

// Where a part of matvec_int8_parts puts its rows W x (+ bias). The last three are the Q, K and V
// of a step whose product also does rope_and_store_kv's work (KvWrite), so that no RoPE kernel
// runs between the product and the attention.
enum class PartOutput : int {
  Rows,             // y, as matvec_int8 (with `accumulate`)
  RopedQuery,       // rotated as rope_and_store_kv rotates q, into y
  RopedKeyToCache,  // rotated, as float16 into the key cache at the token's slot; y unused
  ValueToCache,     // as float16 into the value cache at the token's slot; y unused
};

// One matrix of a grouped product (matvec_int8_parts, matmul_dequant_mma_parts): y = W x (+ bias)
// into y ([tokens x ldy]), or where `output` says (matvec_int8_parts only).
struct MatvecPart {
  DeviceMatrix w;
  float* y = nullptr;
  int64_t ldy = 0;
  const float* bias = nullptr;
  PartOutput output = PartOutput::Rows;
};
constexpr int kMaxMatvecParts = 3;

// The RoPE and KV cache write of the parts whose output is not Rows (rope_and_store_kv's
// arguments): token t of the product is at positions[t] and cache slot slots[t]; the caches are
// float16 [slot][head_count_kv * head_dim].
struct KvWrite {
  RopeParams rope;
  const int32_t* positions = nullptr;
  const int32_t* slots = nullptr;
  void* key_cache = nullptr;
  void* value_cache = nullptr;
};

// out = the int8 blocks of x ([tokens x cols], cols a multiple of 32).
void quantize_activations(const float* x, int64_t cols, int64_t tokens, ActivationsQ8 out,
                          cudaStream_t stream);

// As matvec, with the activations given as quantize_activations made them (row length w.cols):
// integer dot products of weight and activation blocks (__dp4a), scaled per block pair. One warp
// per two rows (four for one token's rows of at most 32 units, two for one token's rows of 128
// units or more split over two warps); weights read once per 8 tokens. The small block types
// (2-byte aligned) are read as aligned 4-byte words, which may reach 2 bytes past the matrix's
// last block (never past the 4-byte word that holds it; device allocations are 256-byte granular).
void matvec_int8(const DeviceMatrix& w, ActivationsQ8 x, float* y, int64_t ldy, const float* bias,
                 bool accumulate, int64_t tokens, cudaStream_t stream);

// matvec_int8 of up to kMaxMatvecParts matrices reading the same activations, in one launch (the
// parts' rows are laid end to end over the grid): Q, K and V, or gate and up. All parts have the
// same ggml type and the same cols; count in [1, kMaxMatvecParts]. Parts whose output is not Rows
// need `kv` and accumulate false; their rows must be whole heads (head_count or head_count_kv
// times head_dim), and the results are those of matvec_int8 followed by rope_and_store_kv, bit
// for bit. Throws realizar::Error (unhandled_case) otherwise.
void matvec_int8_parts(const MatvecPart* parts, int count, ActivationsQ8 x, bool accumulate,
                       int64_t tokens, cudaStream_t stream, const KvWrite* kv = nullptr);

// y[t][r] = (accumulate ? y[t][r] : 0) + sum_c W[r][c] x[t][c] (+ bias[r]) for t < tokens, r <
// w.rows, on the tensor cores (mma.sync.m16n8k16 float16, sm_80 and later), for the types
// matvec_reads_int8 accepts. x: float16 [tokens x w.cols] (16-byte aligned); y [tokens x ldy].
// Each weight element is turned into the float16 scale * q + offset of its block in registers
// (one rounding: scale and offset are the float16 roundings of d * sc and -dmin * m, the element
// that of scale * q + offset) and the products are summed in float32 in a fixed order
// (deterministic). Reads each weight byte once per tile of 32 tokens; meant for steps of 9-64
// tokens (matvec_int8 reads it once per 8 but needs no tensor cores; above 64, dequantize_to_half
// + cuBLAS is faster: docs/perf-notes.md, "Steps of 65-512 tokens"). Larger token counts are
// computed correctly, tile after tile. The 2-byte aligned block types may read up to 2 bytes past
// the matrix's last block, as matvec_int8. Throws realizar::Error (unhandled_case) for a type it
// has no kernel for or tokens < 1.
void matmul_dequant_mma(const DeviceMatrix& w, const void* x, float* y, int64_t ldy, const float* bias,
                        bool accumulate, int64_t tokens, cudaStream_t stream);

// matmul_dequant_mma of `count` (1..kMaxMatvecParts) matrices reading the same activations, in one
// launch (their row tiles laid end to end over the grid): Q, K and V, or gate and up. All parts
// have the same ggml type and the same cols; part i writes parts[i].y ([tokens x parts[i].ldy])
// with parts[i].bias. Throws for mixed types or widths.
void matmul_dequant_mma_parts(const MatvecPart* parts, int count, const void* x, bool accumulate,
                              int64_t tokens, cudaStream_t stream);

// The launch shape of matmul_dequant_mma, for tests and benchmarks: CTAs of 4 warps of
// `warp_rows` (16 or 32) rows x 32 tokens; `splits` (1..8) CTAs of one thread-block cluster share
// a row tile and split K, adding their sums in a fixed order through distributed shared memory.
struct MmaShape {
  int warp_rows = 32;
  int splits = 1;
};

// matmul_dequant_mma_parts with an explicit launch shape (throws for a shape outside the list
// above); matmul_dequant_mma_shape gives the one matmul_dequant_mma picks for `rows` (of all
// parts together) x `cols` at `tokens`: the most splits that still fit one wave of CTAs, warps of
// 32 rows when that fills at least half a wave, else of 16 (dequant_mma.cu).
void matmul_dequant_mma_tiled(const MatvecPart* parts, int count, const void* x, bool accumulate,
                              int64_t tokens, MmaShape shape, cudaStream_t stream);
MmaShape matmul_dequant_mma_shape(int64_t rows, int64_t cols, int64_t tokens);

// out[r][c] = W[r][c] as float16 for rows [row_begin, row_begin + row_count): out is
// [row_count x cols].
void dequantize_to_half(const DeviceMatrix& w, int64_t row_begin, int64_t row_count, void* out,
                        cudaStream_t stream);

// out[t] = row tokens[t] of the embedding matrix, as float32 ([count x cols]).
void embed_rows(const DeviceMatrix& w, const int32_t* tokens, int64_t count, float* out,
                cudaStream_t stream);

// dst[i] = half(src[i]) for i < n.
void float_to_half(const float* src, void* dst, int64_t n, cudaStream_t stream);

// y[t][r] += bias[r] for t < tokens, r < rows.
void add_bias(float* y, int64_t ldy, const float* bias, int64_t rows, int64_t tokens,
              cudaStream_t stream);

// Whether norm_rows handles rows of `width` floats (it holds a row in registers): widths that are
// a multiple of 4 up to 16384, others up to 4096.
bool norm_width_supported(int64_t width);

// RMSNorm (Zhang & Sennrich 2019) or, with `layer_norm`, LayerNorm (Ba et al. 2016) of each row:
// out[t] = norm(x[t]) * weight (+ bias). x and out [tokens x width], width as
// norm_width_supported allows. Also writes `copy` (InputCopy; its int8 blocks need a width that
// is a multiple of 32).
void norm_rows(const float* x, const float* weight, const float* bias, float* out, int64_t width,
               int64_t tokens, float epsilon, bool layer_norm, InputCopy copy, cudaStream_t stream);

// out[i] = x[rows[i]] for i < count (rows of `width` floats).
void gather_rows(const float* x, const int32_t* rows, int64_t count, int64_t width, float* out,
                 cudaStream_t stream);

// The biases of Q [q_dim], K and V [kv_dim] (nullptr: none).
struct QkvBias {
  const float* q = nullptr;
  const float* k = nullptr;
  const float* v = nullptr;
};

// RoPE (Su et al. 2021) after the biases: q = rotate(q + bias.q) [tokens x q_dim] in place, and
// rotate(k + bias.k) and v + bias.v [tokens x kv_dim] as float16 at cache slot slots[t] of
// key_cache / value_cache (k and v themselves are not changed). The float32 sums are those of a
// product that adds its bias (the same bits); angles and rotation in float64: position * inv_freq[i].
void rope_and_store_kv(const RopeParams& p, const QkvBias& bias, float* q, const float* k, const float* v,
                       const int32_t* positions, const int32_t* slots, int64_t tokens,
                       void* key_cache, void* value_cache, cudaStream_t stream);

struct AttentionParams {
  int head_count = 0;
  int head_count_kv = 0;
  int head_dim = 0;    // multiple of 8, at most 128
  int block_size = 0;  // tokens per KV cache block
  float scale = 0;     // 1 / sqrt(head_dim)
};

// Query tiles of the flash-attention kernel: up to flash_tile_tokens(group) consecutive tokens of
// one sequence at consecutive positions (a prompt chunk or a piece of one), whose query rows
// (token-major: row = token * group + the query head's index in its KV head's group, at most
// kFlashTileRows) one CTA computes against one KV head. The step packer cuts runs of at least
// kFlashMinTokens such tokens into tiles; other tokens (decode rows, short runs) attend one by one.
constexpr int kFlashTileRows = 128;
constexpr int kFlashMinTokens = 16;
constexpr int flash_tile_tokens(int group) { return kFlashTileRows / group; }
// The most key ranges a token or tile is split into (the merge kernel's CTA holds one per thread).
constexpr int kMaxAttentionSplits = 128;

// A step's attention inputs in device memory, as StepPacker lays them out (kv/step_inputs.h): read
// on the device, so that a captured graph serves any step of the same plan.
struct AttentionStep {
  const int32_t* positions = nullptr;      // [step tokens]
  const int32_t* seq_rows = nullptr;       // [step tokens]: the token's row of block_tables
  const int32_t* block_tables = nullptr;   // [rows x *table_stride]: each sequence's cache blocks
  const int32_t* table_stride = nullptr;   // one value
  const int32_t* decode_tokens = nullptr;  // [plan.decode_tokens]: step tokens that attend one by one;
                                           // null: step tokens 0, 1, ... (one dependent load less)
  const int32_t* tiles = nullptr;          // [plan.tiles x 4], 16-byte aligned: {first step token,
                                           // tokens (1..flash_tile_tokens), table row, first position}
  // The step's token count. A sequence has at most this many tokens in the step, all past the keys
  // it had before, so a decode token's keys below its position + 1 - step_tokens were written by
  // earlier steps: the decode kernel reads them before its PDL wait. 0: none is assumed so.
  int64_t step_tokens = 0;
};

// The launch shape of a step's attention, fixed when it is enqueued (a captured graph keeps it):
// how many decode tokens and tiles there are and how many key ranges each is split into
// (flash-decoding; the ranges' partial results are merged by a second kernel).
struct AttentionPlan {
  int64_t decode_tokens = 0;
  int decode_splits = 1;
  int64_t tiles = 0;
  int tile_splits = 1;
};

// Room for the partial results of split key ranges: `rows` rows of head_count x head_dim floats
// (partial_o: unnormalized outputs) and head_count x 2 floats (partial_ml: running max, in natural
// log units, and sum of exponentials). Decode token i's range s takes row i * decode_splits + s,
// token j of tile k's range s row (k * flash_tile_tokens(group) + j) * tile_splits + s: the tiles
// reuse the rows after the decode tokens' merge.
struct AttentionScratch {
  float* partial_o = nullptr;
  float* partial_ml = nullptr;
  int64_t rows = 0;
};

// What a step's attention has to do, for plan_attention: its decode tokens and tiles (StepShape)
// and the most keys any of them attends to.
struct AttentionWork {
  int64_t decode_tokens = 0;
  int64_t decode_max_length = 0;
  int64_t tiles = 0;
  int64_t tile_max_length = 0;
};

// Split counts that keep the GPU busy: decode tokens as decode_splits (decode_attention.h) gives
// for the decode kernel (one wave of as many CTAs as fit on the multiprocessors);
// tiles when (tiles x KV heads) CTAs would leave multiprocessors idle (one CTA per
// multiprocessor), into ranges of at least 256 keys. Both stay within `scratch_rows`.
AttentionPlan plan_attention(const AttentionParams& p, const AttentionWork& work, int multiprocessors,
                             int64_t scratch_rows);

// Causal GQA attention over the paged cache: each step token t sees the keys and values of
// positions [0, positions[t]] of its sequence (cache blocks: row seq_rows[t] of block_tables; slot
// of position j: block j / block_size, entry j % block_size). q: [step tokens x q_dim] float32
// (RoPE applied), caches float16 [slot][kv_dim]; out: [step tokens x q_dim] float32 and `copy`
// (InputCopy) for every decode token and tile token (others untouched).
// - Decode tokens: one CTA per (token, KV head, key range) whose warps split the range into 16-key
//   groups streamed through shared memory by cp.async; the KV head's query heads are the rows of
//   one tensor-core tile: queries rounded to float16, S = Q K^T and O += P V with mma.m16n8k16
//   (float32 accumulation), online softmax (Milakov & Gimelshein 2018) in float32 (base 2), P
//   rounded to float16 (decode_attention.h, decode_attention.cu).
// - Tiles: FlashAttention-2 (Dao 2023, arXiv:2307.08691), one CTA of 8 warps per (tile, KV head,
//   key range): queries rounded to float16, S = Q K^T and O += P V on the tensor cores
//   (mma.m16n8k16, float32 accumulation) over 64-key blocks double-buffered by cp.async, online
//   softmax in float32 (base 2), P rounded to float16. The tiles take only a float16 copy.
// Throws realizar::Error for what it has no kernel for: head_dim not a multiple of 8 in [8, 128],
// more than 8 query heads per KV head, decode tokens with a block_size not a multiple of 16,
// splits outside [1, kMaxAttentionSplits] or beyond scratch.rows, an int8 copy with tiles or with
// head_dim not a multiple of 32, a launch failure.
void attention(const AttentionParams& p, const float* q, const void* key_cache, const void* value_cache,
               const AttentionStep& step, const AttentionPlan& plan, const AttentionScratch& scratch,
               float* out, InputCopy copy, cudaStream_t stream);

// up[i] = silu(gate[i]) * up[i] (SwiGLU, Shazeer 2020) for i < n, and `copy` of the result
// (InputCopy; its int8 blocks, of 32 consecutive i, need n a multiple of 32).
void swiglu(const float* gate, float* up, int64_t n, InputCopy copy, cudaStream_t stream);

// x[i] = gelu(x[i]), tanh form (Hendrycks & Gimpel 2016) for i < n.
void gelu(float* x, int64_t n, cudaStream_t stream);

// Greedy decoding: out[r] = the index of the largest of logits[r][0, vocab) for r < rows (the
// lowest index among equal logits, as the Sampler ranks them), or kArgmaxNaN when the row holds a
// NaN, or kArgmaxAllNegativeInfinity when every logit is -inf. logits: [rows x vocab].
constexpr int32_t kArgmaxAllNegativeInfinity = -1;
constexpr int32_t kArgmaxNaN = -2;
void argmax_rows(const float* logits, int64_t rows, int64_t vocab, int32_t* out, cudaStream_t stream);

// Device-to-device copy bandwidth, bytes read plus written per second: best of several copies of
// a 1 GiB buffer.
double measure_device_copy_bandwidth();

}  // namespace realizar::cuda
