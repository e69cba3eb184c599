#include "backend/cpu/cpu_backend.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <functional>
#include <vector>

#include "backend/cpu/kernels.h"
#include "kv/kv_manager.h"
#include "realizar/error.h"
#include "realizar/quant.h"
#include "realizar/quant_blocks.h"
#include "util/thread_pool.h"

namespace realizar {
namespace {

constexpr int64_t kInitialBatch = 64;     // tokens the scratch buffers hold before growing
constexpr int64_t kTileRows = 16;         // weight rows a thread runs against all batch tokens

std::vector<float> dequantized(const WeightTensor& w) {
  if (!w.present()) return {};
  std::vector<float> out(static_cast<size_t>(w.rows * w.cols));
  for (int64_t r = 0; r < w.rows; ++r) dequantize_row(w.type, w.row(r), out.data() + r * w.cols, w.cols);
  return out;
}

// A weight matrix resolved for the hot loop: its kernel and activation encoding.
struct Linear {
  WeightTensor weight;
  std::vector<float> bias;  // empty: none
  cpu::DotKernel kernel = nullptr;
  cpu::MultiDotKernel multi_kernel = nullptr;  // nullptr: `kernel` token by token
  TensorType input_type = TensorType::F32;

  Linear() = default;
  Linear(const WeightTensor& w, const WeightTensor& b)
      : weight(w), bias(dequantized(b)), kernel(cpu::dot_kernel(w.type)),
        multi_kernel(cpu::multi_dot_kernel(w.type)), input_type(cpu::activation_type(w.type)) {
    if (w.cols % static_cast<int64_t>(tensor_type_info(input_type).block_size) != 0) {
      fail("CPU backend: {} weight with {} columns is not a multiple of the {} block",
           tensor_type_name(w.type), w.cols, tensor_type_name(input_type));
    }
  }
};

struct Norm {
  std::vector<float> weight, bias;
  Norm() = default;
  Norm(const WeightTensor& w, const WeightTensor& b) : weight(dequantized(w)), bias(dequantized(b)) {}
};

struct Layer {
  Norm attn_norm, ffn_norm;
  Linear q, k, v, o, gate, up, down;
};

// One output of a grouped matmul: out[t * out_stride + r] = W[r] . x[t] (+ bias[r]).
struct Projection {
  const Linear* linear;
  float* out;
};

class CpuBackend final : public Backend {
 public:
  CpuBackend(const ModelConfig& config, const ModelWeights& weights, const BackendOptions& options)
      : config_(config),
        weights_(weights),
        pool_(options.threads),
        cache_slots_(options.cache_slots) {
    for (const LayerWeights& w : weights.layers) {
      Layer& l = layers_.emplace_back();
      l.attn_norm = Norm(w.attn_norm, w.attn_norm_bias);
      l.ffn_norm = Norm(w.ffn_norm, WeightTensor{});
      l.q = Linear(w.attn_q, w.attn_q_bias);
      l.k = Linear(w.attn_k, w.attn_k_bias);
      l.v = Linear(w.attn_v, w.attn_v_bias);
      l.o = Linear(w.attn_output, w.attn_output_bias);
      if (w.ffn_gate.present()) l.gate = Linear(w.ffn_gate, WeightTensor{});
      l.up = Linear(w.ffn_up, w.ffn_up_bias);
      l.down = Linear(w.ffn_down, w.ffn_down_bias);
    }
    output_norm_ = Norm(weights.output_norm, weights.output_norm_bias);
    output_ = Linear(weights.output, weights.output_bias);
    const size_t layer_floats = static_cast<size_t>(cache_slots_ * config.kv_dim());
    keys_.assign(static_cast<size_t>(config.block_count), std::vector<float>(layer_floats));
    values_.assign(static_cast<size_t>(config.block_count), std::vector<float>(layer_floats));
    scores_.assign(static_cast<size_t>(pool_.size()),
                   std::vector<float>(static_cast<size_t>(std::max<int64_t>(options.max_sequence_length, 1))));
    reserve_batch(kInitialBatch);
  }

  std::string_view name() const override { return "cpu"; }
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
    const int64_t longest = *std::max_element(batch.positions.begin(), batch.positions.end()) + 1;
    if (longest > static_cast<int64_t>(scores_[0].size())) {
      fail("CPU backend: position {} is past the longest sequence it was built for ({})", longest - 1,
           scores_[0].size());
    }
    const int64_t tokens = static_cast<int64_t>(batch.size());
    reserve_batch(tokens);
    embed(batch);
    rope_tables(batch);
    for (size_t l = 0; l < layers_.size(); ++l) layer(l, batch, cache);
    output_logits(batch, logits);
  }

 private:
  // ---- scratch ---------------------------------------------------------------------------------

  void reserve_batch(int64_t tokens) {
    if (tokens <= capacity_) return;
    capacity_ = tokens;
    const auto floats = [tokens](int64_t width) { return static_cast<size_t>(tokens * width); };
    const int64_t hidden = config_.embedding_length, ffn = config_.feed_forward_length;
    x_.resize(floats(hidden));
    h_.resize(floats(hidden));
    q_.resize(floats(config_.q_dim()));
    k_.resize(floats(config_.kv_dim()));
    v_.resize(floats(config_.kv_dim()));
    attn_.resize(floats(config_.q_dim()));
    proj_.resize(floats(hidden));
    gate_.resize(floats(ffn));
    up_.resize(floats(ffn));
    cos_.resize(floats(config_.rope_dim / 2));
    sin_.resize(floats(config_.rope_dim / 2));
    // Rounded up to whole super-blocks: a type's buffer is only used for widths it divides.
    const int64_t widest = (std::max({hidden, ffn, config_.q_dim()}) + QK_K - 1) / QK_K * QK_K;
    for (TensorType type : kActivationTypes) {
      quantized_[index_of(type)].resize(static_cast<size_t>(tokens) * row_bytes(type, widest));
    }
  }

  static constexpr std::array<TensorType, 3> kActivationTypes = {TensorType::F32, TensorType::Q8_0,
                                                                 TensorType::Q8_K};
  static size_t index_of(TensorType type) {
    return static_cast<size_t>(std::find(kActivationTypes.begin(), kActivationTypes.end(), type) -
                               kActivationTypes.begin());
  }

  // ---- building blocks -------------------------------------------------------------------------

  void embed(const Batch& batch) {
    const int64_t hidden = config_.embedding_length;
    for (size_t t = 0; t < batch.size(); ++t) {
      dequantize_row(weights_.token_embd.type, weights_.token_embd.row(batch.tokens[t]),
                     x_.data() + static_cast<int64_t>(t) * hidden, hidden);
    }
  }

  // cos/sin of position * base^(-2i / rope_dim) for each token, shared by all layers.
  void rope_tables(const Batch& batch) {
    const int64_t half = config_.rope_dim / 2;
    for (size_t t = 0; t < batch.size(); ++t) {
      for (int64_t i = 0; i < half; ++i) {
        const double theta = static_cast<double>(batch.positions[t]) *
                             std::pow(static_cast<double>(config_.rope_freq_base),
                                      -2.0 * static_cast<double>(i) / static_cast<double>(config_.rope_dim));
        cos_[t * half + i] = static_cast<float>(std::cos(theta));
        sin_[t * half + i] = static_cast<float>(std::sin(theta));
      }
    }
  }

  void rope(float* v, int64_t heads, int64_t t) const {
    const int64_t half = config_.rope_dim / 2;
    const bool neox = config_.rope_style == RopeStyle::NeoX;
    const float* cs = cos_.data() + t * half;
    const float* sn = sin_.data() + t * half;
    for (int64_t h = 0; h < heads; ++h) {
      float* head = v + h * config_.head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const int64_t a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
        const float x0 = head[a], x1 = head[b];
        head[a] = x0 * cs[i] - x1 * sn[i];
        head[b] = x0 * sn[i] + x1 * cs[i];
      }
    }
  }

  // RMSNorm (Zhang & Sennrich 2019) or LayerNorm (Ba et al. 2016) of `tokens` rows of `in`.
  void norm(const Norm& n, const float* in, float* out, int64_t tokens) {
    const int64_t width = config_.embedding_length;
    for_each_token(tokens, [&](int64_t t) {
      const float* x = in + t * width;
      float* y = out + t * width;
      double mean = 0.0;
      if (config_.layer_norm) {
        for (int64_t i = 0; i < width; ++i) mean += x[i];
        mean /= static_cast<double>(width);
      }
      double var = 0.0;
      for (int64_t i = 0; i < width; ++i) var += (x[i] - mean) * (x[i] - mean);
      const float scale = static_cast<float>(1.0 / std::sqrt(var / static_cast<double>(width) + config_.norm_epsilon));
      const float m = static_cast<float>(mean);
      for (int64_t i = 0; i < width; ++i) {
        y[i] = (x[i] - m) * scale * n.weight[static_cast<size_t>(i)];
        if (!n.bias.empty()) y[i] += n.bias[static_cast<size_t>(i)];
      }
    });
  }

  // The pool's loop without a heap allocation: a std::function made from a reference_wrapper
  // stores it in place, where a lambda capturing several references would be heap-allocated.
  template <typename Body>
  void parallel_for(int64_t n, const Body& body) {
    pool_.parallel_for(n, std::cref(body));
  }

  // fn(t) for every token, over the pool when there is more than one (a decode step does not
  // wake the workers for per-token work).
  template <typename Fn>
  void for_each_token(int64_t tokens, const Fn& fn) {
    if (tokens == 1) return fn(0);
    parallel_for(tokens, [&](int64_t begin, int64_t end, int) {
      for (int64_t t = begin; t < end; ++t) fn(t);
    });
  }

  // Runs every projection of `group` (all reading the same `tokens` x cols input) in one parallel
  // loop over tiles of their rows: the input is quantized once per activation type, and each tile
  // of weight rows is read once for all tokens.
  template <size_t N>
  void matmul(const std::array<Projection, N>& group, const float* input, int64_t tokens) {
    const int64_t cols = group[0].linear->weight.cols;
    std::array<bool, 3> needed{};
    for (const Projection& p : group) needed[index_of(p.linear->input_type)] = true;
    for (size_t i = 0; i < kActivationTypes.size(); ++i) {
      if (!needed[i]) continue;
      const TensorType type = kActivationTypes[i];
      const size_t bytes = row_bytes(type, static_cast<uint64_t>(cols));
      uint8_t* dst = quantized_[i].data();
      for_each_token(tokens, [&](int64_t t) {
        cpu::quantize_activation_row(type, input + t * cols, dst + static_cast<size_t>(t) * bytes, cols);
      });
    }
    std::array<int64_t, N + 1> tile_start{};
    for (size_t i = 0; i < N; ++i) {
      tile_start[i + 1] = tile_start[i] + (group[i].linear->weight.rows + kTileRows - 1) / kTileRows;
    }
    parallel_for(tile_start[N], [&](int64_t begin, int64_t end, int) {
      for (int64_t tile = begin; tile < end; ++tile) {
        size_t i = 0;
        while (tile >= tile_start[i + 1]) ++i;
        run_tile(group[i], tile - tile_start[i], tokens);
      }
    });
  }

  void run_tile(const Projection& p, int64_t tile, int64_t tokens) const {
    const Linear& l = *p.linear;
    const int64_t cols = l.weight.cols, rows = l.weight.rows;
    const size_t in_bytes = row_bytes(l.input_type, static_cast<uint64_t>(cols));
    const uint8_t* in = quantized_[index_of(l.input_type)].data();
    const int64_t r_end = std::min(rows, (tile + 1) * kTileRows);
    for (int64_t r = tile * kTileRows; r < r_end; ++r) {
      const uint8_t* w = l.weight.row(r);
      const float bias = l.bias.empty() ? 0.0f : l.bias[static_cast<size_t>(r)];
      int64_t t = 0;
      if (l.multi_kernel != nullptr) {
        for (; t < tokens; t += cpu::kMaxTokens) {
          const int count = static_cast<int>(std::min<int64_t>(cpu::kMaxTokens, tokens - t));
          float dots[cpu::kMaxTokens];
          l.multi_kernel(w, in + static_cast<size_t>(t) * in_bytes, in_bytes, count, cols, dots);
          for (int i = 0; i < count; ++i) p.out[(t + i) * rows + r] = dots[i] + bias;
        }
      }
      for (; t < tokens; ++t) {
        p.out[t * rows + r] = l.kernel(w, in + static_cast<size_t>(t) * in_bytes, cols) + bias;
      }
    }
  }

  // ---- the transformer -------------------------------------------------------------------------

  void layer(size_t l, const Batch& batch, const KvStep& cache) {
    const Layer& w = layers_[l];
    const int64_t tokens = static_cast<int64_t>(batch.size());
    const int64_t hidden = config_.embedding_length;
    const size_t n = static_cast<size_t>(tokens * hidden);
    norm(w.attn_norm, x_.data(), h_.data(), tokens);
    attention(l, batch, cache);
    matmul(std::array{Projection{&w.o, proj_.data()}}, attn_.data(), tokens);
    for (size_t i = 0; i < n; ++i) x_[i] += proj_[i];
    // A parallel residual (phi-2) feeds the MLP the attention's normed input, still in h_.
    if (!config_.parallel_residual) norm(w.ffn_norm, x_.data(), h_.data(), tokens);
    feed_forward(w, tokens);
    for (size_t i = 0; i < n; ++i) x_[i] += proj_[i];
  }

  // Causal GQA self-attention; this batch's keys and values are stored first so that each token
  // sees every earlier position of its sequence.
  void attention(size_t l, const Batch& batch, const KvStep& cache) {
    const Layer& w = layers_[l];
    const int64_t tokens = static_cast<int64_t>(batch.size());
    const int64_t kv_dim = config_.kv_dim(), q_dim = config_.q_dim(), head_dim = config_.head_dim;
    matmul(std::array{Projection{&w.q, q_.data()}, Projection{&w.k, k_.data()},
                      Projection{&w.v, v_.data()}},
           h_.data(), tokens);
    std::vector<float>& keys = keys_[l];
    std::vector<float>& values = values_[l];
    for (int64_t t = 0; t < tokens; ++t) {
      rope(q_.data() + t * q_dim, config_.head_count, t);
      rope(k_.data() + t * kv_dim, config_.head_count_kv, t);
      std::copy_n(k_.data() + t * kv_dim, kv_dim, keys.data() + cache.slots[static_cast<size_t>(t)] * kv_dim);
      std::copy_n(v_.data() + t * kv_dim, kv_dim, values.data() + cache.slots[static_cast<size_t>(t)] * kv_dim);
    }
    const int64_t group = config_.head_count / config_.head_count_kv;
    const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim)));
    // Items run head-major so that each thread's contiguous chunk mixes early tokens (short
    // histories) and late ones (long histories) of a prompt.
    parallel_for(tokens * config_.head_count, [&](int64_t begin, int64_t end, int thread) {
      float* scores = scores_[static_cast<size_t>(thread)].data();
      for (int64_t item = begin; item < end; ++item) {
        const int64_t t = item % tokens, head = item / tokens;
        const std::span<const int32_t> blocks = cache.kv.blocks(batch.seq_ids[static_cast<size_t>(t)]);
        const int64_t length = batch.positions[static_cast<size_t>(t)] + 1;
        const int64_t kv_offset = (head / group) * head_dim;
        const float* qh = q_.data() + t * q_dim + head * head_dim;
        const auto slot = [&](int64_t j) { return blocks[static_cast<size_t>(j / kKvBlockSize)] * kKvBlockSize + j % kKvBlockSize; };
        float max_score = -INFINITY;
        for (int64_t j = 0; j < length; ++j) {
          scores[j] = cpu::dot_f32(qh, keys.data() + slot(j) * kv_dim + kv_offset, head_dim) * scale;
          max_score = std::max(max_score, scores[j]);
        }
        float total = 0.0f;
        for (int64_t j = 0; j < length; ++j) total += (scores[j] = std::exp(scores[j] - max_score));
        float* oh = attn_.data() + t * q_dim + head * head_dim;
        std::fill_n(oh, head_dim, 0.0f);
        for (int64_t j = 0; j < length; ++j) {
          cpu::axpy_f32(scores[j] / total, values.data() + slot(j) * kv_dim + kv_offset, oh, head_dim);
        }
      }
    });
  }

  // SwiGLU (Shazeer 2020) or phi-2's GELU MLP from h_ into proj_.
  void feed_forward(const Layer& w, int64_t tokens) {
    const int64_t ffn = config_.feed_forward_length;
    if (config_.gelu_mlp) {
      matmul(std::array{Projection{&w.up, up_.data()}}, h_.data(), tokens);
      constexpr float kSqrt2OverPi = 0.7978845608028654f;  // GELU, tanh form (Hendrycks & Gimpel)
      for_each_token(tokens, [&](int64_t t) {
        for (float* u = up_.data() + t * ffn; u < up_.data() + (t + 1) * ffn; ++u) {
          *u = 0.5f * *u * (1.0f + std::tanh(kSqrt2OverPi * (*u + 0.044715f * *u * *u * *u)));
        }
      });
    } else {
      matmul(std::array{Projection{&w.gate, gate_.data()}, Projection{&w.up, up_.data()}}, h_.data(), tokens);
      for_each_token(tokens, [&](int64_t t) {
        for (int64_t i = t * ffn; i < (t + 1) * ffn; ++i) up_[i] *= gate_[i] / (1.0f + std::exp(-gate_[i]));
      });
    }
    matmul(std::array{Projection{&w.down, proj_.data()}}, up_.data(), tokens);
  }

  void output_logits(const Batch& batch, std::vector<float>& logits) {
    const int64_t hidden = config_.embedding_length;
    int64_t wanted = 0;
    for (size_t t = 0; t < batch.size(); ++t) {
      if (!batch.want_logits[t]) continue;
      std::copy_n(x_.data() + static_cast<int64_t>(t) * hidden, hidden, h_.data() + wanted * hidden);
      ++wanted;
    }
    norm(output_norm_, h_.data(), x_.data(), wanted);
    logits.resize(static_cast<size_t>(wanted * config_.vocab_size));
    matmul(std::array{Projection{&output_, logits.data()}}, x_.data(), wanted);
  }

  ModelConfig config_;
  ModelWeights weights_;
  ThreadPool pool_;
  int64_t cache_slots_;
  std::vector<Layer> layers_;
  Norm output_norm_;
  Linear output_;
  std::vector<std::vector<float>> keys_, values_;  // per layer: [slot][kv_dim]
  std::vector<std::vector<float>> scores_;         // per thread: attention scores
  int64_t capacity_ = 0;
  std::vector<float> x_, h_, q_, k_, v_, attn_, proj_, gate_, up_, cos_, sin_;
  std::array<std::vector<uint8_t>, 3> quantized_;  // matmul input, per activation type
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(const ModelConfig& config, const ModelWeights& weights,
                                          const BackendOptions& options) {
  return std::make_unique<CpuBackend>(config, weights, options);
}

}  // namespace realizar
