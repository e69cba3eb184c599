// The reference backend's building blocks: plain scalar C++, float32 activations with float64
// accumulation, weights dequantized row by row with the scalar dequantizer. The reference backend
// (reference_backend.cpp) strings them into the forward pass; the simulated tensor-parallel pass
// (src/parallel/simulated_tensor_parallel.h) runs the same blocks on each rank's shard of every
// layer, so both define correctness with one piece of arithmetic.
//
// Shapes: an Activations holds `tokens` rows of `width` floats (row t is token t of the batch).
// Every block reads its dimensions from the ModelConfig it is given: the whole model's, or a
// rank's (fewer heads, fewer feed-forward units) for a shard.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "kv/kv_manager.h"
#include "realizar/backend.h"
#include "realizar/model.h"

namespace realizar::reference {

// Activations of every token of the batch: row t is token t's vector of `width` floats.
struct Activations {
  int64_t tokens = 0;
  int64_t width = 0;
  std::vector<float> data;

  Activations(int64_t t, int64_t w) : tokens(t), width(w), data(static_cast<size_t>(t * w)) {}
  float* row(int64_t t) { return data.data() + t * width; }
  const float* row(int64_t t) const { return data.data() + t * width; }
};

// Row r of `w` as floats.
std::vector<float> dequantized_row(const WeightTensor& w, int64_t r);

// y = W x (+ bias) for every token: W is [rows x cols], x [tokens x cols], y [tokens x rows]; each
// output is float(bias + sum of products), summed in double in column order. `bias` may be absent.
Activations linear(const WeightTensor& w, const WeightTensor& bias, const Activations& x);

// RMSNorm (Zhang & Sennrich 2019): x / sqrt(mean(x^2) + eps) * weight, or with c.layer_norm
// LayerNorm (Ba et al. 2016): (x - mean) / sqrt(var + eps) * weight + bias.
Activations norm(const ModelConfig& c, const WeightTensor& weight, const WeightTensor& bias,
                 const Activations& x);

// Rotates the first rope_dim dimensions of each of `heads` heads of `v` (heads x head_dim floats)
// for `position`, pairing dimensions as c.rope_style says (model.h).
void rope(const ModelConfig& c, float* v, int64_t heads, int64_t position);

// The embedding rows of the batch's tokens: [batch.size() x embedding_length].
Activations embed(const ModelConfig& c, const ModelWeights& w, const Batch& batch);

// Float32 keys and values of every layer: layer l's keys are [slot][kv_dim] (kv_dim values per
// token slot), values likewise. Slots are the KV manager's (src/kv/kv_manager.h).
class KvStorage {
 public:
  KvStorage(int64_t layers, int64_t slots, int64_t kv_dim);

  int64_t kv_dim() const { return kv_dim_; }
  std::vector<float>& keys(int64_t layer) { return keys_[static_cast<size_t>(layer)]; }
  std::vector<float>& values(int64_t layer) { return values_[static_cast<size_t>(layer)]; }
  // Copies each block `from` to block `to` (kKvBlockSize slots, every layer, keys and values).
  void copy_blocks(std::span<const BlockCopy> copies);

 private:
  int64_t kv_dim_;
  std::vector<std::vector<float>> keys_;
  std::vector<std::vector<float>> values_;
};

// Causal self-attention with GQA over the cache, before the output projection: Q/K/V projections
// (with their biases), RoPE, this batch's keys and values written at their slots first (so a token
// sees every earlier position of its sequence, this batch's included), softmax(q k / sqrt(head_dim))
// v per query head (head h reads KV head h / (head_count / head_count_kv)). Returns
// [tokens x c.q_dim()]. `kv` must have c.kv_dim() values per slot.
Activations attention(const ModelConfig& c, const LayerWeights& w, int64_t layer, const Batch& batch,
                      const KvStep& cache, KvStorage& kv, const Activations& h);

// The MLP: SwiGLU (Shazeer 2020) down(silu(gate h) * up h), or with c.gelu_mlp (phi-2)
// down(gelu(up h + up bias)) with GELU's tanh form (Hendrycks & Gimpel 2016); down's bias when
// present. Returns [tokens x embedding_length].
Activations feed_forward(const ModelConfig& c, const LayerWeights& w, const Activations& h);

// One transformer layer's residual structure around its attention and MLP blocks (callables
// taking the normed activations and returning [tokens x embedding_length]):
//   parallel residual (phi-2): x + attn(norm(x)) + mlp(norm(x)), one norm;
//   else:                      y = x + attn(attn_norm(x)); y + mlp(ffn_norm(y)).
template <class AttentionBlock, class MlpBlock>
Activations residual_layer(const ModelConfig& c, const LayerWeights& w, const Activations& x,
                           const AttentionBlock& attention_block, const MlpBlock& mlp_block) {
  const Activations h = norm(c, w.attn_norm, w.attn_norm_bias, x);
  const Activations attn = attention_block(h);
  Activations out = x;
  if (c.parallel_residual) {
    const Activations mlp = mlp_block(h);
    for (size_t i = 0; i < out.data.size(); ++i) out.data[i] += attn.data[i] + mlp.data[i];
    return out;
  }
  for (size_t i = 0; i < out.data.size(); ++i) out.data[i] += attn.data[i];
  const Activations mlp = mlp_block(norm(c, w.ffn_norm, WeightTensor{}, out));
  for (size_t i = 0; i < out.data.size(); ++i) out.data[i] += mlp.data[i];
  return out;
}

// The final norm of the rows of `x` whose logits the batch wants, in batch order:
// [batch.output_count() x embedding_length], the LM head's input.
Activations output_hidden(const ModelConfig& c, const ModelWeights& w, const Batch& batch,
                          const Activations& x);

}  // namespace realizar::reference
