#include "backend/reference/reference_backend.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kv/kv_manager.h"
#include "realizar/error.h"
#include "realizar/quant.h"

namespace realizar {
namespace {

// Activations of every token of the batch: row t is token t's vector of `width` floats.
struct Activations {
  int64_t tokens = 0;
  int64_t width = 0;
  std::vector<float> data;

  Activations(int64_t t, int64_t w) : tokens(t), width(w), data(static_cast<size_t>(t * w)) {}
  float* row(int64_t t) { return data.data() + t * width; }
  const float* row(int64_t t) const { return data.data() + t * width; }
};

std::vector<float> dequantized_row(const WeightTensor& w, int64_t r) {
  std::vector<float> row(static_cast<size_t>(w.cols));
  dequantize_row(w.type, w.row(r), row.data(), w.cols);
  return row;
}

// y = W x (+ bias) for every token: W is [rows x cols], x [tokens x cols], y [tokens x rows].
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

// RMSNorm (Zhang & Sennrich 2019): x / sqrt(mean(x^2) + eps) * weight.
// LayerNorm (Ba et al. 2016): (x - mean) / sqrt(var + eps) * weight + bias.
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

// Rotates the first rope_dim dimensions of each head of `v` (heads x head_dim) for `position`.
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

double silu(double x) { return x / (1.0 + std::exp(-x)); }

// GELU, tanh form (Hendrycks & Gimpel 2016), as phi-2's "gelu_new" and ggml_gelu.
double gelu(double x) {
  constexpr double kSqrt2OverPi = 0.7978845608028654;
  return 0.5 * x * (1.0 + std::tanh(kSqrt2OverPi * (x + 0.044715 * x * x * x)));
}

class ReferenceBackend final : public Backend {
 public:
  ReferenceBackend(const ModelConfig& config, const ModelWeights& weights, const BackendOptions& options)
      : config_(config),
        weights_(weights),
        cache_slots_(options.cache_slots),
        keys_(static_cast<size_t>(config.block_count)),
        values_(static_cast<size_t>(config.block_count)) {
    const size_t layer_floats = static_cast<size_t>(cache_slots_ * config.kv_dim());
    for (auto& k : keys_) k.assign(layer_floats, 0.0f);
    for (auto& v : values_) v.assign(layer_floats, 0.0f);
  }

  std::string_view name() const override { return "reference"; }
  const ModelConfig& config() const override { return config_; }
  int64_t cache_slots() const override { return cache_slots_; }
  int64_t kv_bytes_per_token() const override {
    return kv_cache_bytes_per_token(config_, sizeof(float));
  }

  void copy_blocks(std::span<const BlockCopy> copies) override {
    const int64_t block_floats = kKvBlockSize * config_.kv_dim();
    for (const BlockCopy& c : copies) {
      for (auto* layers : {&keys_, &values_}) {
        for (std::vector<float>& layer : *layers) {
          std::copy_n(layer.begin() + c.from * block_floats, block_floats, layer.begin() + c.to * block_floats);
        }
      }
    }
  }

  void forward(const Batch& batch, const KvStep& cache, std::vector<float>& logits) override {
    batch.check_tokens(config_.vocab_size);
    Activations x = embed(batch);
    for (int64_t l = 0; l < config_.block_count; ++l) x = layer(l, batch, cache, x);
    output_logits(batch, x, logits);
  }

 private:
  Activations embed(const Batch& batch) const {
    Activations x(static_cast<int64_t>(batch.size()), config_.embedding_length);
    for (int64_t t = 0; t < x.tokens; ++t) {
      dequantize_row(weights_.token_embd.type, weights_.token_embd.row(batch.tokens[t]), x.row(t),
                     x.width);
    }
    return x;
  }

  Activations layer(int64_t l, const Batch& batch, const KvStep& cache, const Activations& x) {
    const LayerWeights& w = weights_.layers[static_cast<size_t>(l)];
    const Activations h = norm(config_, w.attn_norm, w.attn_norm_bias, x);
    const Activations attn = linear(w.attn_output, w.attn_output_bias, attention(l, batch, cache, h));

    Activations out = x;
    if (config_.parallel_residual) {
      const Activations mlp = feed_forward(w, h);
      for (size_t i = 0; i < out.data.size(); ++i) out.data[i] += attn.data[i] + mlp.data[i];
      return out;
    }
    for (size_t i = 0; i < out.data.size(); ++i) out.data[i] += attn.data[i];
    const Activations mlp = feed_forward(w, norm(config_, w.ffn_norm, WeightTensor{}, out));
    for (size_t i = 0; i < out.data.size(); ++i) out.data[i] += mlp.data[i];
    return out;
  }

  // Causal self-attention with GQA over the cache: stores this batch's keys and values first, so
  // that a token sees every earlier position of its sequence, including those in this batch.
  Activations attention(int64_t l, const Batch& batch, const KvStep& cache, const Activations& h) {
    const LayerWeights& w = weights_.layers[static_cast<size_t>(l)];
    Activations q = linear(w.attn_q, w.attn_q_bias, h);
    Activations k = linear(w.attn_k, w.attn_k_bias, h);
    const Activations v = linear(w.attn_v, w.attn_v_bias, h);
    const int64_t kv_dim = config_.kv_dim();
    std::vector<float>& keys = keys_[static_cast<size_t>(l)];
    std::vector<float>& values = values_[static_cast<size_t>(l)];
    for (int64_t t = 0; t < h.tokens; ++t) {
      rope(config_, q.row(t), config_.head_count, batch.positions[t]);
      rope(config_, k.row(t), config_.head_count_kv, batch.positions[t]);
      std::copy_n(k.row(t), kv_dim, keys.data() + cache.slots[t] * kv_dim);
      std::copy_n(v.row(t), kv_dim, values.data() + cache.slots[t] * kv_dim);
    }

    Activations out(h.tokens, config_.q_dim());
    const int64_t group = config_.head_count / config_.head_count_kv;
    const double scale = 1.0 / std::sqrt(static_cast<double>(config_.head_dim));
    std::vector<double> scores;
    for (int64_t t = 0; t < h.tokens; ++t) {
      const int32_t seq = batch.seq_ids[t];
      const int64_t length = batch.positions[t] + 1;
      scores.resize(static_cast<size_t>(length));
      for (int64_t head = 0; head < config_.head_count; ++head) {
        const float* qh = q.row(t) + head * config_.head_dim;
        const int64_t kv_offset = (head / group) * config_.head_dim;
        double max_score = -INFINITY;
        for (int64_t j = 0; j < length; ++j) {
          const float* kj = keys.data() + cache.kv.slot(seq, j) * kv_dim + kv_offset;
          double dot = 0.0;
          for (int64_t d = 0; d < config_.head_dim; ++d) dot += static_cast<double>(qh[d]) * kj[d];
          scores[static_cast<size_t>(j)] = dot * scale;
          max_score = std::max(max_score, dot * scale);
        }
        double total = 0.0;
        for (double& s : scores) total += (s = std::exp(s - max_score));
        float* oh = out.row(t) + head * config_.head_dim;
        for (int64_t d = 0; d < config_.head_dim; ++d) {
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

  // SwiGLU (Shazeer 2020): down(silu(gate h) * up h); phi-2: down(gelu(up h + b) ) + b.
  Activations feed_forward(const LayerWeights& w, const Activations& h) const {
    Activations up = linear(w.ffn_up, w.ffn_up_bias, h);
    if (config_.gelu_mlp) {
      for (float& u : up.data) u = static_cast<float>(gelu(u));
    } else {
      const Activations gate = linear(w.ffn_gate, WeightTensor{}, h);
      for (size_t i = 0; i < up.data.size(); ++i) {
        up.data[i] = static_cast<float>(silu(gate.data[i]) * up.data[i]);
      }
    }
    return linear(w.ffn_down, w.ffn_down_bias, up);
  }

  void output_logits(const Batch& batch, const Activations& x, std::vector<float>& logits) const {
    Activations wanted(static_cast<int64_t>(batch.output_count()), x.width);
    int64_t n = 0;
    for (int64_t t = 0; t < x.tokens; ++t) {
      if (batch.want_logits[t]) std::copy_n(x.row(t), x.width, wanted.row(n++));
    }
    const Activations h = norm(config_, weights_.output_norm, weights_.output_norm_bias, wanted);
    logits = linear(weights_.output, weights_.output_bias, h).data;
  }

  ModelConfig config_;
  ModelWeights weights_;
  int64_t cache_slots_;
  std::vector<std::vector<float>> keys_;    // per layer: [slot][kv_dim]
  std::vector<std::vector<float>> values_;  // per layer: [slot][kv_dim]
};

}  // namespace

std::unique_ptr<Backend> make_reference_backend(const ModelConfig& config,
                                                const ModelWeights& weights, const BackendOptions& options) {
  return std::make_unique<ReferenceBackend>(config, weights, options);
}

}  // namespace realizar
