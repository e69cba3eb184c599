// The transformer family realizar serves, described by flags (DESIGN.md §1): hyper-parameters
// from GGUF metadata and typed views of the weights, resolved once at load so that no string
// lookup happens while running.
//
// GGUF metadata keys and tensor names follow llama.cpp (gguf-py/gguf/constants.py):
// `{arch}.embedding_length`, `blk.N.attn_q.weight`, ... Supported architectures: `llama`
// (LLaMA-2/3, TinyLlama, DeepSeek-Coder, SmolLM), `qwen2` (Qwen2/2.5, -Coder), `phi2`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "realizar/gguf.h"
#include "realizar/tensor_type.h"

namespace realizar {

enum class Architecture { Llama, Qwen2, Phi2 };

// How RoPE pairs the dimensions of a head (RoFormer, arXiv:2104.09864):
//   Interleaved rotates (x[2i], x[2i+1]) — llama.cpp's LLAMA_ROPE_TYPE_NORM; the GGUF converter
//               permutes LLaMA's Q/K weights so that this pairing is right for them.
//   NeoX        rotates (x[i], x[i + n_rot/2]) — Hugging Face's rotate_half; Qwen2 and phi-2.
// Angle of pair i at position p: p * rope_freq_base^(-2i / n_rot).
enum class RopeStyle { Interleaved, NeoX };

struct ModelConfig {
  Architecture architecture = Architecture::Llama;
  std::string architecture_name;  // the `general.architecture` value
  int64_t vocab_size = 0;         // rows of token_embd
  int64_t context_length = 0;     // {arch}.context_length: the training context
  int64_t embedding_length = 0;   // hidden size
  int64_t block_count = 0;        // layers
  int64_t feed_forward_length = 0;
  int64_t head_count = 0;
  int64_t head_count_kv = 0;  // GQA: head_count / head_count_kv query heads share one K/V head
  int64_t head_dim = 0;       // {arch}.attention.key_length, else embedding_length / head_count
  int64_t rope_dim = 0;       // dimensions rotated per head (phi-2 rotates part of each head)
  float norm_epsilon = 1e-5f;
  float rope_freq_base = 10000.0f;
  RopeStyle rope_style = RopeStyle::Interleaved;
  bool layer_norm = false;         // LayerNorm with bias (phi-2), else RMSNorm
  bool gelu_mlp = false;           // up → GELU (tanh form) → down (phi-2), else SwiGLU
  bool parallel_residual = false;  // x + attn(norm(x)) + mlp(norm(x)) (phi-2)

  int64_t q_dim() const { return head_count * head_dim; }
  int64_t kv_dim() const { return head_count_kv * head_dim; }

  // Reads the hyper-parameters of `file`; throws realizar::Error naming the architecture when it
  // is not supported, or the key when a required one is missing or inconsistent.
  static ModelConfig from_gguf(const gguf::File& file);
};

// A 2-D weight as stored: `rows` rows of `cols` elements each (GGUF dims ne0 = cols, ne1 = rows),
// row r at data + r * row_bytes. A linear layer y = W x has one row per output.
struct WeightTensor {
  TensorType type = TensorType::F32;
  int64_t cols = 0;
  int64_t rows = 0;
  const uint8_t* data = nullptr;  // nullptr: the tensor is absent (optional biases)
  size_t row_bytes = 0;

  bool present() const { return data != nullptr; }
  const uint8_t* row(int64_t r) const { return data + static_cast<size_t>(r) * row_bytes; }
};

struct LayerWeights {
  WeightTensor attn_norm, attn_norm_bias;  // bias: LayerNorm only
  WeightTensor attn_q, attn_k, attn_v;     // [q_dim | kv_dim rows, hidden cols]
  WeightTensor attn_q_bias, attn_k_bias, attn_v_bias;
  WeightTensor attn_output, attn_output_bias;  // [hidden rows, q_dim cols]
  WeightTensor ffn_norm;                       // absent with a parallel residual
  WeightTensor ffn_gate;                       // SwiGLU only
  WeightTensor ffn_up, ffn_up_bias;            // [ffn rows, hidden cols]
  WeightTensor ffn_down, ffn_down_bias;        // [hidden rows, ffn cols]
};

struct ModelWeights {
  WeightTensor token_embd;  // [vocab rows, hidden cols]
  std::vector<LayerWeights> layers;
  WeightTensor output_norm, output_norm_bias;
  WeightTensor output, output_bias;  // output is token_embd when the embeddings are tied

  // Views into `file`'s mapping (the file must outlive the weights). Checks every tensor's
  // presence and shape against `config`; throws realizar::Error naming the tensor otherwise.
  // A fused `blk.N.attn_qkv` tensor is split into Q, K and V views (its rows are consecutive).
  static ModelWeights from_gguf(const gguf::File& file, const ModelConfig& config);
};

// Bytes of weights a single-token decode step reads (every matrix once, the embedding row
// excepted): the numerator of the decode bandwidth figure (DESIGN.md §4).
uint64_t weight_bytes_per_token(const ModelWeights& weights);

}  // namespace realizar
