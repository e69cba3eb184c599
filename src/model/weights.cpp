#include <string>

#include "realizar/error.h"
#include "realizar/model.h"

namespace realizar {
namespace {

// Looks tensors up by name once, checking type support and shape.
class WeightLoader {
 public:
  explicit WeightLoader(const gguf::File& file) : file_(file) {}

  // A matrix of `rows` x `cols` (GGUF dims [cols, rows]).
  WeightTensor matrix(const std::string& name, int64_t cols, int64_t rows) const {
    const gguf::TensorInfo* info = file_.find_tensor(name);
    if (!info) fail("{}: missing tensor '{}'", file_.path().string(), name);
    return view(*info, cols, rows);
  }

  // A vector of `n` elements, stored as a 1-D tensor.
  WeightTensor vector(const std::string& name, int64_t n) const { return matrix(name, n, 1); }

  WeightTensor optional_vector(const std::string& name, int64_t n) const {
    return file_.find_tensor(name) ? vector(name, n) : WeightTensor{};
  }

  bool has(const std::string& name) const { return file_.find_tensor(name) != nullptr; }

 private:
  WeightTensor view(const gguf::TensorInfo& info, int64_t cols, int64_t rows) const {
    uint64_t info_rows = 1;
    for (size_t d = 1; d < info.dims.size(); ++d) info_rows *= info.dims[d];
    if (info.dims[0] != static_cast<uint64_t>(cols) || info_rows != static_cast<uint64_t>(rows)) {
      fail("{}: tensor '{}' has shape {} but the model needs [{}, {}]", file_.path().string(),
           info.name, shape_string(info), cols, rows);
    }
    WeightTensor t;
    t.type = info.type;
    t.cols = cols;
    t.rows = rows;
    t.data = file_.tensor_data(info);
    t.row_bytes = row_bytes(info.type, static_cast<uint64_t>(cols));
    return t;
  }

  static std::string shape_string(const gguf::TensorInfo& info) {
    std::string s = "[";
    for (size_t d = 0; d < info.dims.size(); ++d) {
      s += (d ? ", " : "") + std::to_string(info.dims[d]);
    }
    return s + "]";
  }

  const gguf::File& file_;
};

// Rows [first, first + count) of a fused matrix as a tensor of its own.
WeightTensor row_slice(const WeightTensor& t, int64_t first, int64_t count) {
  WeightTensor slice = t;
  slice.rows = count;
  if (t.rows == 1) {  // a fused bias vector: elements, not rows
    slice.cols = count;
    slice.rows = 1;
    slice.data = t.data + row_bytes(t.type, static_cast<uint64_t>(first));
    slice.row_bytes = row_bytes(t.type, static_cast<uint64_t>(count));
    return slice;
  }
  slice.data = t.row(first);
  return slice;
}

LayerWeights load_layer(const WeightLoader& w, const ModelConfig& c, int64_t layer) {
  const std::string p = "blk." + std::to_string(layer) + ".";
  const int64_t h = c.embedding_length, q = c.q_dim(), kv = c.kv_dim(), f = c.feed_forward_length;
  LayerWeights l;
  l.attn_norm = w.vector(p + "attn_norm.weight", h);
  if (c.layer_norm) l.attn_norm_bias = w.vector(p + "attn_norm.bias", h);

  if (w.has(p + "attn_qkv.weight")) {
    WeightTensor qkv = w.matrix(p + "attn_qkv.weight", h, q + 2 * kv);
    l.attn_q = row_slice(qkv, 0, q);
    l.attn_k = row_slice(qkv, q, kv);
    l.attn_v = row_slice(qkv, q + kv, kv);
    WeightTensor bias = w.optional_vector(p + "attn_qkv.bias", q + 2 * kv);
    if (bias.present()) {
      l.attn_q_bias = row_slice(bias, 0, q);
      l.attn_k_bias = row_slice(bias, q, kv);
      l.attn_v_bias = row_slice(bias, q + kv, kv);
    }
  } else {
    l.attn_q = w.matrix(p + "attn_q.weight", h, q);
    l.attn_k = w.matrix(p + "attn_k.weight", h, kv);
    l.attn_v = w.matrix(p + "attn_v.weight", h, kv);
    l.attn_q_bias = w.optional_vector(p + "attn_q.bias", q);
    l.attn_k_bias = w.optional_vector(p + "attn_k.bias", kv);
    l.attn_v_bias = w.optional_vector(p + "attn_v.bias", kv);
  }
  l.attn_output = w.matrix(p + "attn_output.weight", q, h);
  l.attn_output_bias = w.optional_vector(p + "attn_output.bias", h);

  if (!c.parallel_residual) l.ffn_norm = w.vector(p + "ffn_norm.weight", h);
  if (!c.gelu_mlp) l.ffn_gate = w.matrix(p + "ffn_gate.weight", h, f);
  l.ffn_up = w.matrix(p + "ffn_up.weight", h, f);
  l.ffn_up_bias = w.optional_vector(p + "ffn_up.bias", f);
  l.ffn_down = w.matrix(p + "ffn_down.weight", f, h);
  l.ffn_down_bias = w.optional_vector(p + "ffn_down.bias", h);
  return l;
}

}  // namespace

ModelWeights ModelWeights::from_gguf(const gguf::File& file, const ModelConfig& c) {
  WeightLoader w(file);
  ModelWeights m;
  m.token_embd = w.matrix("token_embd.weight", c.embedding_length, c.vocab_size);
  for (int64_t i = 0; i < c.block_count; ++i) m.layers.push_back(load_layer(w, c, i));
  m.output_norm = w.vector("output_norm.weight", c.embedding_length);
  if (c.layer_norm) m.output_norm_bias = w.vector("output_norm.bias", c.embedding_length);
  m.output = w.has("output.weight") ? w.matrix("output.weight", c.embedding_length, c.vocab_size)
                                    : m.token_embd;
  m.output_bias = w.optional_vector("output.bias", c.vocab_size);
  return m;
}

uint64_t weight_bytes_per_token(const ModelWeights& m) {
  auto bytes = [](const WeightTensor& t) {
    return t.present() ? static_cast<uint64_t>(t.row_bytes) * static_cast<uint64_t>(t.rows) : 0;
  };
  uint64_t total = bytes(m.output_norm) + bytes(m.output_norm_bias) + bytes(m.output) +
                   bytes(m.output_bias) + m.token_embd.row_bytes;
  for (const LayerWeights& l : m.layers) {
    for (const WeightTensor* t :
         {&l.attn_norm, &l.attn_norm_bias, &l.attn_q, &l.attn_k, &l.attn_v, &l.attn_q_bias,
          &l.attn_k_bias, &l.attn_v_bias, &l.attn_output, &l.attn_output_bias, &l.ffn_norm,
          &l.ffn_gate, &l.ffn_up, &l.ffn_up_bias, &l.ffn_down, &l.ffn_down_bias}) {
      total += bytes(*t);
    }
  }
  return total;
}

}  // namespace realizar
