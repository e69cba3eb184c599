#include "backend/cpu/cpu_backend.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <vector>

#include "backend/cpu/cpu_features.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/packed_weights.h"
#include "kv/kv_manager.h"
#include "realizar/error.h"
#include "realizar/quant.h"
#include "realizar/quant_blocks.h"
#include "util/thread_pool.h"

namespace realizar {
namespace {

using cpu::ActivationFormat;
using cpu::kGroupRows;

constexpr int64_t kInitialBatch = 64;   // tokens the scratch buffers hold before growing
constexpr int64_t kTokensPerPass = 64;  // tokens one GEMM call runs against a weight group
constexpr int64_t kTileTokens = 8;      // tokens of one sequence sharing an attention call
static_assert(kKvBlockSize == 16, "the key cache layout (kernels.h key_cache_index) has 16-slot blocks");
constexpr std::array<ActivationFormat, 3> kFormats = {ActivationFormat::Q8K, ActivationFormat::Q8Block32,
                                                      ActivationFormat::F32};

size_t format_index(ActivationFormat format) { return static_cast<size_t>(format); }

std::vector<float> dequantized(const WeightTensor& w) {
  if (!w.present()) return {};
  std::vector<float> out(static_cast<size_t>(w.rows * w.cols));
  for (int64_t r = 0; r < w.rows; ++r) dequantize_row(w.type, w.row(r), out.data() + r * w.cols, w.cols);
  return out;
}

// A weight matrix resolved for the hot loop: packed with its GEMM kernel, or read row by row.
struct Linear {
  WeightTensor weight;
  std::unique_ptr<cpu::PackedMatrix> packed;  // nullptr: row-wise float dot products
  cpu::GemmKernel gemm = nullptr;
  ActivationFormat format = ActivationFormat::F32;
  std::vector<float> bias;  // empty: none

  Linear() = default;
  Linear(const WeightTensor& w, const WeightTensor& b, const cpu::KernelSet& kernels, cpu::PackedArena& arena,
         ThreadPool& pool)
      : weight(w), format(cpu::activation_format(w.type)), bias(dequantized(b)) {
    if (cpu::can_pack(w.type)) {
      packed = std::make_unique<cpu::PackedMatrix>(w, arena, pool);
      gemm = kernels.gemm_for(w.type);
    } else if (!can_dequantize(w.type)) {
      fail("the CPU backend has no kernel for weight type {}", tensor_type_name(w.type));
    }
  }
  int64_t rows() const { return weight.rows; }
  int64_t cols() const { return weight.cols; }
  int64_t groups() const { return (weight.rows + kGroupRows - 1) / kGroupRows; }
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

// What a matmul does with row r of token t's result v.
enum class Epilogue {
  Store,   // out = v + bias
  AddTo,   // out += v + bias (the residual connections)
  SwiGLU,  // out = silu(gate . x + gate bias) * (v + bias), `gate` the paired matrix
  Gelu,    // out = gelu(v + bias)
};

// One output of a matmul stage: out[t * out_stride + r] from linear's row r against token t.
struct Projection {
  const Linear* linear;
  float* out;
  int64_t out_stride;
  Epilogue epilogue = Epilogue::Store;
  const Linear* gate = nullptr;  // SwiGLU only
};

// A run of tokens of one sequence whose attention is computed in one call per KV head.
struct AttentionTile {
  int64_t first;  // batch index of the first token
  int64_t count;
  int32_t seq;
};

// Per-thread scratch of a forward pass.
struct ThreadScratch {
  std::vector<float> gemm_out, gate_out;  // [kTokensPerPass][16]
  std::vector<float> attention;           // the attention kernel's scratch
  std::vector<const float*> queries;
  std::vector<float*> outputs;
  std::vector<int64_t> lengths;
  std::vector<float> row;                 // a dequantized weight row (row-wise matrices)
  std::vector<float> epilogue;            // [2][16]
};

// One stage of a forward pass: its items are claimed by whichever threads are running (a thread
// the OS has descheduled holds nobody up unless it holds an item), and a thread moves on to the
// next stage once every item of this one is done. A cache line each (no false sharing).
struct alignas(64) Stage {
  std::atomic<int64_t> next{0};   // next unclaimed item
  std::atomic<uint32_t> done{0};  // items finished
};

// Stages of one forward pass: the embedding, 10 per layer, 3 for the logits.
constexpr int64_t stages_per_forward(int64_t layers) { return 1 + 10 * layers + 3; }

class CpuBackend final : public Backend {
 public:
  CpuBackend(const ModelConfig& config, const ModelWeights& weights, const BackendOptions& options,
             const cpu::KernelSet& kernels)
      : config_(config),
        weights_(weights),
        kernels_(kernels),
        pool_(options.threads > 0 ? options.threads : cpu::physical_core_count()),
        cache_slots_(options.cache_slots),
        max_sequence_length_(std::max<int64_t>(options.max_sequence_length, 1)) {
    if (config.head_dim % 8 != 0) fail("CPU backend: head dimension {} is not a multiple of 8", config.head_dim);
    if (config.rope_dim % 2 != 0 || config.rope_dim > config.head_dim) {
      fail("CPU backend: rotary dimension {} is not an even number up to the head dimension {}", config.rope_dim,
           config.head_dim);
    }
    size_t packed = 0;
    for_each_matrix(weights, [&](const WeightTensor& w) {
      if (cpu::can_pack(w.type)) packed += cpu::packed_bytes(w);
    });
    arena_ = std::make_unique<cpu::PackedArena>(packed);
    const auto linear = [&](const WeightTensor& w, const WeightTensor& bias) {
      return Linear(w, bias, kernels_, *arena_, pool_);
    };
    for (const LayerWeights& w : weights.layers) {
      Layer& l = layers_.emplace_back();
      l.attn_norm = Norm(w.attn_norm, w.attn_norm_bias);
      l.ffn_norm = Norm(w.ffn_norm, WeightTensor{});
      l.q = linear(w.attn_q, w.attn_q_bias);
      l.k = linear(w.attn_k, w.attn_k_bias);
      l.v = linear(w.attn_v, w.attn_v_bias);
      l.o = linear(w.attn_output, w.attn_output_bias);
      if (w.ffn_gate.present()) l.gate = linear(w.ffn_gate, WeightTensor{});
      l.up = linear(w.ffn_up, w.ffn_up_bias);
      l.down = linear(w.ffn_down, w.ffn_down_bias);
    }
    output_norm_ = Norm(weights.output_norm, weights.output_norm_bias);
    output_ = linear(weights.output, weights.output_bias);
    for (int64_t i = 0; i < config.rope_dim / 2; ++i) {
      inverse_frequency_.push_back(std::pow(static_cast<double>(config.rope_freq_base),
                                            -2.0 * static_cast<double>(i) / static_cast<double>(config.rope_dim)));
    }
    const size_t layer_values = static_cast<size_t>(cache_slots_ * config.kv_dim());
    keys_.assign(static_cast<size_t>(config.block_count), std::vector<ggml_half>(layer_values));
    values_.assign(static_cast<size_t>(config.block_count), std::vector<ggml_half>(layer_values));
    const int64_t group = config.head_count / config.head_count_kv;
    const int64_t max_queries = kTileTokens * group;
    scratch_.resize(static_cast<size_t>(pool_.size()));
    for (ThreadScratch& s : scratch_) {
      s.gemm_out.resize(kTokensPerPass * kGroupRows);
      s.gate_out.resize(kTokensPerPass * kGroupRows);
      s.attention.resize(static_cast<size_t>(cpu::attention_scratch_floats(max_queries, config.head_dim, max_sequence_length_)));
      s.queries.resize(static_cast<size_t>(max_queries));
      s.outputs.resize(static_cast<size_t>(max_queries));
      s.lengths.resize(static_cast<size_t>(max_queries));
      s.epilogue.resize(2 * kGroupRows);
    }
    stages_ = std::vector<Stage>(static_cast<size_t>(stages_per_forward(config.block_count)));
    reserve_batch(kInitialBatch);
  }

  std::string_view name() const override { return "cpu"; }
  std::string detail() const override { return std::string(cpu::isa_name(kernels_.isa)); }
  const ModelConfig& config() const override { return config_; }
  int64_t cache_slots() const override { return cache_slots_; }
  int64_t kv_bytes_per_token() const override { return kv_cache_bytes_per_token(config_, sizeof(ggml_half)); }

  void copy_blocks(std::span<const BlockCopy> copies) override {
    const int64_t block_values = kKvBlockSize * config_.kv_dim();
    for (const BlockCopy& c : copies) {
      for (auto* layers : {&keys_, &values_}) {
        for (std::vector<ggml_half>& layer : *layers) {
          std::copy_n(layer.begin() + c.from * block_values, block_values, layer.begin() + c.to * block_values);
        }
      }
    }
  }

  void forward(const Batch& batch, const KvStep& cache, std::vector<float>& logits) override {
    batch.check_tokens(config_.vocab_size);
    const int64_t longest = *std::max_element(batch.positions.begin(), batch.positions.end()) + 1;
    if (longest > max_sequence_length_) {
      fail("CPU backend: position {} is past the longest sequence it was built for ({})", longest - 1,
           max_sequence_length_);
    }
    const int64_t tokens = static_cast<int64_t>(batch.size());
    reserve_batch(tokens);
    plan_attention(batch);
    wanted_.clear();
    for (size_t t = 0; t < batch.size(); ++t) {
      if (batch.want_logits[t]) wanted_.push_back(static_cast<int64_t>(t));
    }
    logits.resize(wanted_.size() * static_cast<size_t>(config_.vocab_size));
    for (Stage& stage : stages_) {
      stage.next.store(0, std::memory_order_relaxed);
      stage.done.store(0, std::memory_order_relaxed);
    }
    pool_.run([&](int thread) {
      Pass pass{*this, batch, cache, logits, thread};
      pass.run();
    });
  }

 private:
  // The matrices the constructor turns into Linears, in no particular order.
  template <typename Fn>
  static void for_each_matrix(const ModelWeights& weights, const Fn& fn) {
    for (const LayerWeights& w : weights.layers) {
      for (const WeightTensor* m : {&w.attn_q, &w.attn_k, &w.attn_v, &w.attn_output, &w.ffn_gate, &w.ffn_up, &w.ffn_down}) {
        if (m->present()) fn(*m);
      }
    }
    fn(weights.output);
  }

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
    up_.resize(floats(ffn));
    rope_.resize(floats(config_.rope_dim));  // per token: cos, sin of each pair
    const int64_t widest = (std::max({hidden, ffn, config_.q_dim()}) + QK_K - 1) / QK_K * QK_K;
    for (ActivationFormat format : kFormats) {
      activations_[format_index(format)].resize(static_cast<size_t>(tokens) * cpu::activation_row_bytes(format, widest));
    }
    wanted_.reserve(static_cast<size_t>(tokens));
    tiles_.reserve(static_cast<size_t>(tokens));
  }

  // Consecutive batch tokens of one sequence, up to kTileTokens, share an attention call.
  void plan_attention(const Batch& batch) {
    tiles_.clear();
    for (size_t t = 0; t < batch.size(); ++t) {
      const int32_t seq = batch.seq_ids[t];
      if (!tiles_.empty() && tiles_.back().seq == seq && tiles_.back().count < kTileTokens &&
          tiles_.back().first + tiles_.back().count == static_cast<int64_t>(t)) {
        ++tiles_.back().count;
      } else {
        tiles_.push_back({static_cast<int64_t>(t), 1, seq});
      }
    }
  }

  // ---- one forward pass, run by every thread of the pool ----------------------------------------

  struct Pass {
    CpuBackend& b;
    const Batch& batch;
    const KvStep& cache;
    std::vector<float>& logits;
    int thread;
    int threads = b.pool_.size();
    size_t stage_index = 0;
    ThreadScratch& scratch = b.scratch_[static_cast<size_t>(thread)];
    const ModelConfig& c = b.config_;
    const cpu::KernelSet& k = b.kernels_;
    int64_t tokens = static_cast<int64_t>(batch.size());

    void run() {
      embed();
      for (size_t l = 0; l < b.layers_.size(); ++l) layer(l);
      output();
    }

    // fn(item) for the items of the next stage this thread claims, `grain` at a time; returns once
    // all of the stage's items are done (by any thread).
    template <typename Fn>
    void stage(int64_t items, int64_t grain, const Fn& fn) {
      if (stage_index == b.stages_.size()) fail("CPU backend: more stages than stages_per_forward counts");
      Stage& st = b.stages_[stage_index++];
      for (int64_t first = st.next.fetch_add(grain, std::memory_order_relaxed); first < items;
           first = st.next.fetch_add(grain, std::memory_order_relaxed)) {
        const int64_t last = std::min(items, first + grain);
        for (int64_t item = first; item < last; ++item) fn(item);
        b.pool_.advance(st.done, static_cast<uint32_t>(last - first));
      }
      b.pool_.wait_for(st.done, static_cast<uint32_t>(items));
    }

    void embed() {
      const int64_t hidden = c.embedding_length, half = c.rope_dim / 2;
      stage(tokens, 1, [&](int64_t t) {
        dequantize_row(b.weights_.token_embd.type, b.weights_.token_embd.row(batch.tokens[static_cast<size_t>(t)]),
                       b.x_.data() + t * hidden, hidden);
        // cos and sin of position * base^(-2i / rope_dim), shared by all layers
        float* table = b.rope_.data() + t * 2 * half;
        for (int64_t i = 0; i < half; ++i) {
          const double theta = static_cast<double>(batch.positions[static_cast<size_t>(t)]) * b.inverse_frequency_[static_cast<size_t>(i)];
          table[2 * i] = static_cast<float>(std::cos(theta));
          table[2 * i + 1] = static_cast<float>(std::sin(theta));
        }
      });
    }

    void layer(size_t l) {
      const Layer& w = b.layers_[l];
      const int64_t hidden = c.embedding_length;
      // Attention block: x += o(attention(q, k, v of norm(x)))
      normalize_and_quantize(w.attn_norm, {&w.q, &w.k, &w.v});
      matmul(std::array{Projection{&w.q, b.q_.data(), c.q_dim()}, Projection{&w.k, b.k_.data(), c.kv_dim()},
                        Projection{&w.v, b.v_.data(), c.kv_dim()}},
             b.h_.data(), tokens);
      rope_and_store(l);
      attention(l);
      quantize(b.attn_.data(), c.q_dim(), {&w.o}, tokens);
      matmul(std::array{Projection{&w.o, b.x_.data(), hidden, Epilogue::AddTo}}, b.attn_.data(), tokens);
      // MLP block: x += down(act(up(norm(x)))); a parallel residual (phi-2) feeds it the attention's
      // normed input, still in h_.
      const int64_t ffn = c.feed_forward_length;
      if (c.parallel_residual) {
        quantize(b.h_.data(), hidden, {&w.up}, tokens);
      } else {
        normalize_and_quantize(w.ffn_norm, {&w.gate, &w.up});
      }
      if (c.gelu_mlp) {
        matmul(std::array{Projection{&w.up, b.up_.data(), ffn, Epilogue::Gelu}}, b.h_.data(), tokens);
      } else {
        matmul(std::array{Projection{&w.up, b.up_.data(), ffn, Epilogue::SwiGLU, &w.gate}}, b.h_.data(), tokens);
      }
      quantize(b.up_.data(), ffn, {&w.down}, tokens);
      matmul(std::array{Projection{&w.down, b.x_.data(), hidden, Epilogue::AddTo}}, b.up_.data(), tokens);
    }

    void output() {
      const int64_t hidden = c.embedding_length;
      const int64_t wanted = static_cast<int64_t>(b.wanted_.size());
      // The wanted rows of x, normed, into the first rows of h_, then quantized.
      stage(wanted, 1, [&](int64_t i) {
        norm_row(b.output_norm_, b.x_.data() + b.wanted_[static_cast<size_t>(i)] * hidden, b.h_.data() + i * hidden, 0, hidden);
      });
      quantize(b.h_.data(), hidden, {&b.output_}, wanted);
      matmul(std::array{Projection{&b.output_, logits.data(), c.vocab_size}}, b.h_.data(), wanted);
    }

    // ---- normalization and activation quantization ----------------------------------------------

    // RMSNorm (Zhang & Sennrich 2019) or LayerNorm (Ba et al. 2016) of row `in` into columns
    // [from, to) of `out`; the statistics are always those of the whole row.
    void norm_row(const Norm& n, const float* in, float* out, int64_t from, int64_t to) const {
      const int64_t width = c.embedding_length;
      double mean = 0.0;
      if (c.layer_norm) {
        for (int64_t i = 0; i < width; ++i) mean += in[i];
        mean /= static_cast<double>(width);
      }
      double var = 0.0;
      for (int64_t i = 0; i < width; ++i) var += (in[i] - mean) * (in[i] - mean);
      const float scale = static_cast<float>(1.0 / std::sqrt(var / static_cast<double>(width) + c.norm_epsilon));
      const float m = static_cast<float>(mean);
      for (int64_t i = from; i < to; ++i) {
        out[i] = (in[i] - m) * scale * n.weight[static_cast<size_t>(i)];
        if (!n.bias.empty()) out[i] += n.bias[static_cast<size_t>(i)];
      }
    }

    // A stage over `rows` rows of `width` columns: whole rows when there are enough for every
    // thread, else each row split into column ranges of whole `align`-column blocks (a decode
    // step's single row is quantized by all threads).
    template <typename Fn>
    void for_row_parts(int64_t rows, int64_t width, int64_t align, const Fn& fn) {
      const int64_t blocks = width / align;
      const int64_t parts = rows >= threads ? 1 : std::clamp<int64_t>(threads, 1, std::max<int64_t>(blocks, 1));
      stage(rows * parts, 1, [&](int64_t item) {
        const int64_t row = item / parts, part = item % parts;
        fn(row, part == 0 ? 0 : blocks * part / parts * align, part == parts - 1 ? width : blocks * (part + 1) / parts * align);
      });
    }

    static int64_t alignment(std::initializer_list<const Linear*> consumers) {
      int64_t align = 32;
      for (const Linear* l : consumers) {
        if (l->format == ActivationFormat::Q8K) align = QK_K;
      }
      return align;
    }

    // Columns [from, to) of row t of `in` (width columns) into every activation format `consumers`
    // read (F32 reads `in` itself).
    void quantize_part(const float* in, int64_t width, std::initializer_list<const Linear*> consumers, int64_t t,
                       int64_t from, int64_t to) const {
      std::array<bool, kFormats.size()> done{};
      for (const Linear* l : consumers) {
        if (l->weight.data == nullptr || done[format_index(l->format)]) continue;
        done[format_index(l->format)] = true;
        uint8_t* row = b.activations_[format_index(l->format)].data() +
                       static_cast<size_t>(t) * cpu::activation_row_bytes(l->format, width);
        const float* x = in + t * width + from;
        switch (l->format) {
          case ActivationFormat::Q8K:
            k.quantize_k(x, reinterpret_cast<cpu::ActBlockK*>(row) + from / QK_K, to - from);
            break;
          case ActivationFormat::Q8Block32:
            k.quantize_32(x, reinterpret_cast<cpu::ActBlock32*>(row) + from / 32, to - from);
            break;
          case ActivationFormat::F32:
            break;  // the matmul reads the float rows in place
        }
      }
    }

    void quantize(const float* in, int64_t width, std::initializer_list<const Linear*> consumers, int64_t rows) {
      for_row_parts(rows, width, alignment(consumers), [&](int64_t t, int64_t from, int64_t to) {
        quantize_part(in, width, consumers, t, from, to);
      });
    }

    // norm(x) into h_ and quantized for `consumers`; each part computes its row's statistics.
    void normalize_and_quantize(const Norm& n, std::initializer_list<const Linear*> consumers) {
      const int64_t hidden = c.embedding_length;
      for_row_parts(tokens, hidden, alignment(consumers), [&](int64_t t, int64_t from, int64_t to) {
        norm_row(n, b.x_.data() + t * hidden, b.h_.data() + t * hidden, from, to);
        quantize_part(b.h_.data(), hidden, consumers, t, from, to);
      });
    }

    // ---- matmul ----------------------------------------------------------------------------------

    // A stage over the groups of every projection, claimed a few at a time, against `rows` input
    // rows: the quantized activations of `input` (float rows, read as such by row-wise matrices).
    template <size_t N>
    void matmul(const std::array<Projection, N>& group, const float* input, int64_t rows) {
      std::array<int64_t, N + 1> start{};
      for (size_t i = 0; i < N; ++i) start[i + 1] = start[i] + group[i].linear->groups();
      const int64_t total = start[N];
      stage(total, std::max<int64_t>(1, total / (8 * threads)), [&](int64_t task) {
        size_t i = 0;
        while (task >= start[i + 1]) ++i;
        run_group(group[i], task - start[i], input, rows);
      });
    }

    const uint8_t* activation_rows(const Linear& l, const float* floats) const {
      if (l.format == ActivationFormat::F32) return reinterpret_cast<const uint8_t*>(floats);
      return b.activations_[format_index(l.format)].data();
    }

    // out[t * 16 + r] for rows 16g + r of `l` against tokens [t0, t0 + n).
    void compute_group(const Linear& l, int64_t g, int64_t t0, int64_t n, const float* floats, float* out) {
      const size_t row_bytes = cpu::activation_row_bytes(l.format, l.cols());
      const uint8_t* act = activation_rows(l, floats) + static_cast<size_t>(t0) * row_bytes;
      if (l.packed) {
        l.gemm(l.packed->group(g), act, row_bytes, n, l.packed->blocks(), out);
        return;
      }
      for (int64_t r = 0; r < kGroupRows; ++r) {
        const int64_t row = g * kGroupRows + r;
        if (row >= l.rows()) break;
        for (int64_t t = 0; t < n; ++t) {
          out[t * kGroupRows + r] = row_dot(l, row, reinterpret_cast<const float*>(act + static_cast<size_t>(t) * row_bytes));
        }
      }
    }

    float row_dot(const Linear& l, int64_t r, const float* x) {
      const WeightTensor& w = l.weight;
      switch (w.type) {
        case TensorType::F32: return k.dot_f32(reinterpret_cast<const float*>(w.row(r)), x, w.cols);
        case TensorType::F16: return k.dot_f16(reinterpret_cast<const ggml_half*>(w.row(r)), x, w.cols);
        case TensorType::BF16: return k.dot_bf16(reinterpret_cast<const uint16_t*>(w.row(r)), x, w.cols);
        default: {
          // Types without a kernel of their own (Q2_K, Q3_K, ...): dequantize the row, then a float dot.
          scratch.row.resize(static_cast<size_t>(w.cols));
          dequantize_row(w.type, w.row(r), scratch.row.data(), w.cols);
          return k.dot_f32(scratch.row.data(), x, w.cols);
        }
      }
    }

    void run_group(const Projection& p, int64_t g, const float* in_floats, int64_t rows) {
      const Linear& l = *p.linear;
      const int64_t r0 = g * kGroupRows, count = std::min<int64_t>(kGroupRows, l.rows() - r0);
      for (int64_t t0 = 0; t0 < rows; t0 += kTokensPerPass) {
        const int64_t n = std::min(kTokensPerPass, rows - t0);
        compute_group(l, g, t0, n, in_floats, scratch.gemm_out.data());
        if (p.epilogue == Epilogue::SwiGLU) compute_group(*p.gate, g, t0, n, in_floats, scratch.gate_out.data());
        for (int64_t t = 0; t < n; ++t) {
          float* value = scratch.gemm_out.data() + t * kGroupRows;
          if (!l.bias.empty()) {
            for (int64_t r = 0; r < count; ++r) value[r] += l.bias[static_cast<size_t>(r0 + r)];
          }
          float* dst = p.out + (t0 + t) * p.out_stride + r0;
          switch (p.epilogue) {
            case Epilogue::Store:
              std::copy_n(value, count, dst);
              break;
            case Epilogue::AddTo:
              for (int64_t r = 0; r < count; ++r) dst[r] += value[r];
              break;
            case Epilogue::SwiGLU:
              k.swiglu(scratch.gate_out.data() + t * kGroupRows, value, scratch.epilogue.data(), kGroupRows);
              std::copy_n(scratch.epilogue.data(), count, dst);
              break;
            case Epilogue::Gelu:
              for (int64_t r = 0; r < count; ++r) dst[r] = gelu(value[r]);
              break;
          }
        }
      }
    }

    static float gelu(float u) {
      constexpr float kSqrt2OverPi = 0.7978845608028654f;  // GELU, tanh form (Hendrycks & Gimpel 2016)
      return 0.5f * u * (1.0f + std::tanh(kSqrt2OverPi * (u + 0.044715f * u * u * u)));
    }

    // ---- attention -------------------------------------------------------------------------------

    // RoPE (Su et al. 2021) on every token's query and key heads, then the keys and values into the
    // cache as float16.
    void rope_and_store(size_t l) {
      const int64_t kv_dim = c.kv_dim(), q_dim = c.q_dim();
      stage(tokens, 1, [&](int64_t t) {
        rope(b.q_.data() + t * q_dim, c.head_count, t);
        rope(b.k_.data() + t * kv_dim, c.head_count_kv, t);
        const int64_t slot = cache.slots[static_cast<size_t>(t)];
        for (int64_t h = 0; h < c.head_count_kv; ++h) {
          for (int64_t e = 0; e < c.head_dim; ++e) {
            b.keys_[l][static_cast<size_t>(cpu::key_cache_index(slot, h, e, c.head_count_kv, c.head_dim))] =
                fp32_to_fp16(b.k_[static_cast<size_t>(t * kv_dim + h * c.head_dim + e)]);
          }
        }
        k.to_f16(b.v_.data() + t * kv_dim, b.values_[l].data() + slot * kv_dim, kv_dim);
      });
    }

    void rope(float* v, int64_t heads, int64_t t) const {
      const int64_t half = c.rope_dim / 2;
      const bool neox = c.rope_style == RopeStyle::NeoX;
      const float* table = b.rope_.data() + t * 2 * half;
      for (int64_t h = 0; h < heads; ++h) {
        float* head = v + h * c.head_dim;
        for (int64_t i = 0; i < half; ++i) {
          const int64_t a = neox ? i : 2 * i, z = neox ? i + half : 2 * i + 1;
          const float x0 = head[a], x1 = head[z], cs = table[2 * i], sn = table[2 * i + 1];
          head[a] = x0 * cs - x1 * sn;
          head[z] = x0 * sn + x1 * cs;
        }
      }
    }

    // Causal GQA attention: items are (tile, KV head), each one kernel call over the tile's tokens
    // and the query heads of that KV head.
    void attention(size_t l) {
      const int64_t kv_heads = c.head_count_kv, group = c.head_count / kv_heads, head_dim = c.head_dim;
      stage(static_cast<int64_t>(b.tiles_.size()) * kv_heads, 1, [&](int64_t item) {
        const AttentionTile& tile = b.tiles_[static_cast<size_t>(item / kv_heads)];
        const int64_t kv_head = item % kv_heads;
        int64_t queries = 0;
        for (int64_t t = tile.first; t < tile.first + tile.count; ++t) {
          for (int64_t h = kv_head * group; h < (kv_head + 1) * group; ++h) {
            scratch.queries[static_cast<size_t>(queries)] = b.q_.data() + t * c.q_dim() + h * head_dim;
            scratch.outputs[static_cast<size_t>(queries)] = b.attn_.data() + t * c.q_dim() + h * head_dim;
            scratch.lengths[static_cast<size_t>(queries)] = batch.positions[static_cast<size_t>(t)] + 1;
            ++queries;
          }
        }
        const cpu::AttentionArgs args{
            scratch.queries.data(),
            scratch.outputs.data(),
            scratch.lengths.data(),
            queries,
            cache.kv.blocks(tile.seq).data(),
            b.keys_[l].data() + kv_head * head_dim * kKvBlockSize,
            kKvBlockSize * c.kv_dim(),
            b.values_[l].data() + kv_head * head_dim,
            c.kv_dim(),
            head_dim,
            static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim))),
            scratch.attention.data(),
        };
        k.attention(args);
      });
    }
  };

  ModelConfig config_;
  ModelWeights weights_;
  const cpu::KernelSet& kernels_;
  ThreadPool pool_;
  int64_t cache_slots_;
  int64_t max_sequence_length_;
  std::unique_ptr<cpu::PackedArena> arena_;  // the packed weights of every Linear
  std::vector<Layer> layers_;
  Norm output_norm_;
  Linear output_;
  std::vector<double> inverse_frequency_;             // base^(-2i / rope_dim)
  // Per layer: keys as cpu::key_cache_index lays them out, values [slot][kv_dim]; float16.
  std::vector<std::vector<ggml_half>> keys_, values_;
  std::vector<ThreadScratch> scratch_;
  std::vector<Stage> stages_;
  int64_t capacity_ = 0;
  std::vector<float> x_, h_, q_, k_, v_, attn_, up_, rope_;
  std::array<std::vector<uint8_t>, kFormats.size()> activations_;  // matmul inputs, per format
  std::vector<int64_t> wanted_;        // batch rows whose logits are wanted
  std::vector<AttentionTile> tiles_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(const ModelConfig& config, const ModelWeights& weights,
                                          const BackendOptions& options) {
  return std::make_unique<CpuBackend>(config, weights, options, cpu::active_kernels());
}

std::unique_ptr<Backend> make_cpu_backend(const ModelConfig& config, const ModelWeights& weights,
                                          const BackendOptions& options, cpu::Isa isa) {
  if (!cpu::isa_supported(isa, cpu::cpu_features())) fail("this CPU cannot run the {} kernels", cpu::isa_name(isa));
  return std::make_unique<CpuBackend>(config, weights, options, cpu::kernel_set(isa));
}

}  // namespace realizar
