#include "backend/reference/reference_math.h"

#include <algorithm>
#include <cmath>

#include "realizar/quant.h"

namespace realizar::reference {
namespace {

double silu(double x) { return x / (1.0 + std::exp(-x)); }

// GELU, tanh form (Hendrycks & Gimpel 2016), as phi-2's "gelu_new" and ggml_gelu.
double gelu(double x) {
  constexpr double kSqrt2OverPi = 0.7978845608028654;
  return 0.5 * x * (1.0 + std::tanh(kSqrt2OverPi * (x + 0.044715 * x * x * x)));
}

}  // namespace

std::vector<float> dequantized_row(const WeightTensor& w, int64_t r) {
  std::vector<float> row(static_cast<size_t>(w.cols));
  dequantize_row(w.type, w.row(r), row.data(), w.cols);
  return row;
}

// Each weight row is dequantized once and used for all tokens.
Activations linear(const WeightTensor& w, const WeightTensor& bias, const Activations& x) {
  Activations y(x.tokens, w.rows);
  std::vector<float> b = bias.present() ? dequantized_row(bias, 0) : std::vector<float>();
  std::vector<float> row(static_cast<size_t>(w.cols));
  for (int64_t r = 0; r < w.rows; ++r) {
    dequantize_row(w.type, w.row(r), row.data(), w.cols);
    for (int64_t t = 0; t < x.tokens; ++t) {
      const float* xt = x.row(t);
      double sum = b.empty() ? 0.0 : b[static_cast<size_t>(r)];
      for (int64_t c = 0; c < w.cols; ++c) sum += static_cast<double>(row[c]) * xt[c];
      y.row(t)[r] = static_cast<float>(sum);
    }
  }
  return y;
}

Activations norm(const ModelConfig& c, const WeightTensor& weight, const WeightTensor& bias,
                 const Activations& x) {
  const std::vector<float> w = dequantized_row(weight, 0);
  const std::vector<float> b = bias.present() ? dequantized_row(bias, 0) : std::vector<float>();
  Activations y(x.tokens, x.width);
  for (int64_t t = 0; t < x.tokens; ++t) {
    const float* xt = x.row(t);
    double mean = 0.0;
    if (c.layer_norm) {
      for (int64_t i = 0; i < x.width; ++i) mean += xt[i];
      mean /= static_cast<double>(x.width);
    }
    double var = 0.0;
    for (int64_t i = 0; i < x.width; ++i) var += (xt[i] - mean) * (xt[i] - mean);
    const double scale = 1.0 / std::sqrt(var / static_cast<double>(x.width) + c.norm_epsilon);
    for (int64_t i = 0; i < x.width; ++i) {
      double v = (xt[i] - mean) * scale * w[static_cast<size_t>(i)];
      if (!b.empty()) v += b[static_cast<size_t>(i)];
      y.row(t)[i] = static_cast<float>(v);
    }
  }
  return y;
}

void rope(const ModelConfig& c, float* v, int64_t heads, int64_t position) {
  const int64_t half = c.rope_dim / 2;
  for (int64_t i = 0; i < half; ++i) {
    const double theta =
        static_cast<double>(position) *
        std::pow(static_cast<double>(c.rope_freq_base), -2.0 * static_cast<double>(i) / c.rope_dim);
    const double cos_t = std::cos(theta), sin_t = std::sin(theta);
    const bool neox = c.rope_style == RopeStyle::NeoX;
    const int64_t a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
    for (int64_t h = 0; h < heads; ++h) {
      float* head = v + h * c.head_dim;
      const double x0 = head[a], x1 = head[b];
      head[a] = static_cast<float>(x0 * cos_t - x1 * sin_t);
      head[b] = static_cast<float>(x0 * sin_t + x1 * cos_t);
    }
  }
}

Activations embed(const ModelConfig& c, const ModelWeights& w, const Batch& batch) {
  Activations x(static_cast<int64_t>(batch.size()), c.embedding_length);
  for (int64_t t = 0; t < x.tokens; ++t) {
    dequantize_row(w.token_embd.type, w.token_embd.row(batch.tokens[t]), x.row(t), x.width);
  }
  return x;
}

KvStorage::KvStorage(int64_t layers, int64_t slots, int64_t kv_dim)
    : kv_dim_(kv_dim), keys_(static_cast<size_t>(layers)), values_(static_cast<size_t>(layers)) {
  const size_t layer_floats = static_cast<size_t>(slots * kv_dim);
  for (auto& k : keys_) k.assign(layer_floats, 0.0f);
  for (auto& v : values_) v.assign(layer_floats, 0.0f);
}

void KvStorage::copy_blocks(std::span<const BlockCopy> copies) {
  const int64_t block_floats = kKvBlockSize * kv_dim_;
  for (const BlockCopy& c : copies) {
    for (auto* layers : {&keys_, &values_}) {
      for (std::vector<float>& layer : *layers) {
        std::copy_n(layer.begin() + c.from * block_floats, block_floats, layer.begin() + c.to * block_floats);
      }
    }
  }
}

Activations attention(const ModelConfig& c, const LayerWeights& w, int64_t layer, const Batch& batch,
                      const KvStep& cache, KvStorage& kv, const Activations& h) {
  Activations q = linear(w.attn_q, w.attn_q_bias, h);
  Activations k = linear(w.attn_k, w.attn_k_bias, h);
  const Activations v = linear(w.attn_v, w.attn_v_bias, h);
  const int64_t kv_dim = c.kv_dim();
  std::vector<float>& keys = kv.keys(layer);
  std::vector<float>& values = kv.values(layer);
  for (int64_t t = 0; t < h.tokens; ++t) {
    rope(c, q.row(t), c.head_count, batch.positions[t]);
    rope(c, k.row(t), c.head_count_kv, batch.positions[t]);
    std::copy_n(k.row(t), kv_dim, keys.data() + cache.slots[t] * kv_dim);
    std::copy_n(v.row(t), kv_dim, values.data() + cache.slots[t] * kv_dim);
  }

  Activations out(h.tokens, c.q_dim());
  const int64_t group = c.head_count / c.head_count_kv;
  const double scale = 1.0 / std::sqrt(static_cast<double>(c.head_dim));
  std::vector<double> scores;
  for (int64_t t = 0; t < h.tokens; ++t) {
    const int32_t seq = batch.seq_ids[t];
    const int64_t length = batch.positions[t] + 1;
    scores.resize(static_cast<size_t>(length));
    for (int64_t head = 0; head < c.head_count; ++head) {
      const float* qh = q.row(t) + head * c.head_dim;
      const int64_t kv_offset = (head / group) * c.head_dim;
      double max_score = -INFINITY;
      for (int64_t j = 0; j < length; ++j) {
        const float* kj = keys.data() + cache.kv.slot(seq, j) * kv_dim + kv_offset;
        double dot = 0.0;
        for (int64_t d = 0; d < c.head_dim; ++d) dot += static_cast<double>(qh[d]) * kj[d];
        scores[static_cast<size_t>(j)] = dot * scale;
        max_score = std::max(max_score, dot * scale);
      }
      double total = 0.0;
      for (double& s : scores) total += (s = std::exp(s - max_score));
      float* oh = out.row(t) + head * c.head_dim;
      for (int64_t d = 0; d < c.head_dim; ++d) {
        double sum = 0.0;
        for (int64_t j = 0; j < length; ++j) {
          sum += scores[static_cast<size_t>(j)] *
                 values[static_cast<size_t>(cache.kv.slot(seq, j) * kv_dim + kv_offset + d)];
        }
        oh[d] = static_cast<float>(sum / total);
      }
    }
  }
  return out;
}

Activations feed_forward(const ModelConfig& c, const LayerWeights& w, const Activations& h) {
  Activations up = linear(w.ffn_up, w.ffn_up_bias, h);
  if (c.gelu_mlp) {
    for (float& u : up.data) u = static_cast<float>(gelu(u));
  } else {
    const Activations gate = linear(w.ffn_gate, WeightTensor{}, h);
    for (size_t i = 0; i < up.data.size(); ++i) {
      up.data[i] = static_cast<float>(silu(gate.data[i]) * up.data[i]);
    }
  }
  return linear(w.ffn_down, w.ffn_down_bias, up);
}

Activations output_hidden(const ModelConfig& c, const ModelWeights& w, const Batch& batch,
                          const Activations& x) {
  Activations wanted(static_cast<int64_t>(batch.output_count()), x.width);
  int64_t n = 0;
  for (int64_t t = 0; t < x.tokens; ++t) {
    if (batch.want_logits[t]) std::copy_n(x.row(t), x.width, wanted.row(n++));
  }
  return norm(c, w.output_norm, w.output_norm_bias, wanted);
}

}  // namespace realizar::reference
