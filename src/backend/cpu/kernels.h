// The CPU backend's kernels, one table (KernelSet) per instruction set, chosen at run time from
// CPUID (cpu_features.h): kernels_scalar.cpp (portable C++, the definition of each kernel on the
// packed layouts), kernels_avx2.cpp and kernels_avx512.cpp (the same kernels with AVX2+FMA+F16C or
// AVX-512 VNNI, written once as templates in x86_kernels.h) and kernels_amx.cpp (the AVX-512 set
// with GEMM kernels on the AMX tile unit for 16 tokens at a time). The rest of the backend is portable
// code that calls through the table, so one binary runs the best set of whatever CPU it meets.
//
// Matrix products follow ggml's CPU backend (ggml-cpu/quants.c, ggml_vec_dot_*): the activation
// rows are quantized to 8 bits once per matmul (ActBlockK for K-quant weights, ActBlock32 for the
// 32-element formats) and every weight block is multiplied with integer dot products, the block
// scales applied in float32. Weights are repacked at load into groups of 16 rows
// (packed_weights.h) so that one weight load feeds 16 rows x several tokens of a register tile.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "backend/cpu/cpu_features.h"
#include "realizar/quant_blocks.h"
#include "realizar/tensor_type.h"

namespace realizar::cpu {

// One token's 256 activations for K-quant weights: x = d * qs[i], as ggml's block_q8_K
// (d = max / -127 with max the signed value of largest magnitude, qs = nearbyint(x / d)), with the
// sums of qs over each 16 (bsums) and each 32 (bsums32) elements for the weights' offsets and mins.
struct ActBlockK {
  float d;
  int16_t bsums[QK_K / 16];
  int16_t bsums32[QK_K / 32];
  int8_t qs[QK_K];
};

// One token's 32 activations for Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 weights: x = d * qs[i], as ggml's
// block_q8_0 (d = max|x| / 127 rounded to float16, qs = round(x * (1 / d)) with halves away from
// zero), with sum = sum(qs) for the weights' offsets (taken off the integer dot product, exactly)
// and s = d * sum for their mins (ggml's block_q8_1).
struct ActBlock32 {
  float d;
  float s;
  int32_t sum;
  int8_t qs[32];
};

// The activation encoding a weight type's kernels read.
enum class ActivationFormat { Q8K, Q8Block32, F32 };
ActivationFormat activation_format(TensorType weight_type);
// Bytes of one activation row of `n` elements in `format` (n a multiple of its block).
size_t activation_row_bytes(ActivationFormat format, int64_t n);

// out[t * 16 + r] = sum_k W[r][k] * A_t[k] for the 16 rows r of one packed group and the tokens
// t < tokens, A_t the activation row at act + t * act_stride (ActBlockK or ActBlock32 blocks),
// `blocks` the column blocks of a row (cols / 256 or cols / 32). Any tokens >= 1.
using GemmKernel = void (*)(const uint8_t* group, const uint8_t* act, size_t act_stride, int64_t tokens,
                            int64_t blocks, float* out);

// The key cache layout of one layer: per 16-slot block, per KV head, the keys transposed
// ([block][kv_head][head_dim][16] float16), so that one 16-wide row of a block is element e of 16
// consecutive keys and the scores of 16 keys against a query are head_dim multiply-adds without a
// horizontal sum. Element e of KV head h's key at slot s:
constexpr int64_t key_cache_index(int64_t slot, int64_t head, int64_t e, int64_t kv_heads, int64_t head_dim) {
  return ((slot / 16 * kv_heads + head) * head_dim + e) * 16 + slot % 16;
}

// Causal attention of `queries` query vectors against one KV head of one sequence (GQA: the query
// heads sharing it, for one or more tokens). Key position j of the sequence is at slot
// block_table[j / 16] * 16 + j % 16; its key is the transposed block at
// keys + block * key_block_stride (key_cache_index: element e of the key at block offset i is
// [e * 16 + i]), its value the float16 row values + slot * value_stride. Query i attends positions
// [0, lengths[i]):
//   out_i = sum_j softmax_j(scale * q_i . k_j) v_j
// in two passes over the sequence's blocks (scores, then the weighted values), each key and value
// block converted to float once for all queries; every query's softmax is normalized once, after
// its maximum is known. Each query's result depends only on its own inputs, not on the others in
// the call.
struct AttentionArgs {
  const float* const* q;      // [queries] pointers to head_dim floats
  float* const* out;          // [queries] pointers to head_dim floats
  const int64_t* lengths;     // [queries], each >= 1
  int64_t queries;
  const int32_t* block_table;  // the sequence's KV blocks
  const ggml_half* keys;       // this KV head's transposed block 0
  int64_t key_block_stride;    // elements between blocks (kv_heads * head_dim * 16)
  const ggml_half* values;     // this KV head's value at slot 0
  int64_t value_stride;        // elements between slots (kv_heads * head_dim)
  int64_t head_dim;            // a multiple of 8
  float scale;
  float* scratch;              // attention_scratch_floats(queries, head_dim, longest length) floats
};
using AttentionKernel = void (*)(const AttentionArgs& args);
// `positions` rounded up to whole 16-slot KV blocks.
constexpr int64_t whole_blocks(int64_t positions) { return (positions + 15) / 16 * 16; }
// Floats of scratch an attention call needs: one converted block, and each query's scores (padded
// to whole blocks).
constexpr int64_t attention_scratch_floats(int64_t queries, int64_t head_dim, int64_t longest) {
  return 16 * head_dim + queries * whole_blocks(longest);
}
// AttentionArgs::scratch as the attention kernels lay it out: one converted block (keys
// [head_dim][16] or values [16][head_dim]), then each query's scores, `stride` floats apart.
struct AttentionScratchLayout {
  int64_t longest;  // the longest of the queries' lengths
  int64_t stride;   // whole_blocks(longest)
  float* block;
  float* scores;    // [queries][stride]
};
inline AttentionScratchLayout attention_scratch_layout(const AttentionArgs& args) {
  int64_t longest = 0;
  for (int64_t i = 0; i < args.queries; ++i) longest = std::max(longest, args.lengths[i]);
  return {longest, whole_blocks(longest), args.scratch, args.scratch + 16 * args.head_dim};
}

// The packed types (packed_weights.h), in the order of KernelSet::gemm.
constexpr std::array<TensorType, 8> kPackedTypes = {TensorType::Q4_0, TensorType::Q4_1, TensorType::Q5_0,
                                                    TensorType::Q5_1, TensorType::Q8_0, TensorType::Q4_K,
                                                    TensorType::Q5_K, TensorType::Q6_K};
// Index of `type` in kPackedTypes, or -1.
int packed_type_index(TensorType type);

struct KernelSet {
  Isa isa;
  std::array<GemmKernel, kPackedTypes.size()> gemm;
  AttentionKernel attention;
  // Activation rows of `n` elements (a multiple of 256 / 32).
  void (*quantize_k)(const float* x, ActBlockK* out, int64_t n);
  void (*quantize_32)(const float* x, ActBlock32* out, int64_t n);
  // sum_i w[i] * x[i] for float weights (F32, F16, BF16 rows) against float activations.
  float (*dot_f32)(const float* w, const float* x, int64_t n);
  float (*dot_f16)(const ggml_half* w, const float* x, int64_t n);
  float (*dot_bf16)(const uint16_t* w, const float* x, int64_t n);
  // y[i] = float16(x[i]), rounded to nearest even (the KV cache's stores).
  void (*to_f16)(const float* x, ggml_half* y, int64_t n);
  // out[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + e^-g) (SwiGLU, Shazeer 2020).
  void (*swiglu)(const float* gate, const float* up, float* out, int64_t n);

  GemmKernel gemm_for(TensorType type) const;  // throws realizar::Error for an unpacked type
};

// The table of one instruction set; throws realizar::Error when this build has none for it (a
// build for another architecture than x86-64 has only the scalar one).
const KernelSet& kernel_set(Isa isa);

// The table this process runs: choose_isa(cpu_features(), $REALIZAR_CPU_ISA), decided at the first
// call (throws realizar::Error when REALIZAR_CPU_ISA is invalid for this CPU).
const KernelSet& active_kernels();

// Defined in kernels_scalar.cpp, kernels_avx2.cpp, kernels_avx512.cpp and kernels_amx.cpp.
const KernelSet& scalar_kernels();
#if defined(__x86_64__)
const KernelSet& avx2_kernels();
const KernelSet& avx512_kernels();
const KernelSet& amx_kernels();  // kernels_amx.cpp
#endif

}  // namespace realizar::cpu
