#include "backend/cuda/cuda_backend.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <limits>
#include <map>
#include <set>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "backend/cuda/device_info.h"
#include "backend/cuda/device_sampler.h"
#include "backend/cuda/graph_cache.h"
#include "backend/cuda/kernels.h"
#include "kv/kv_manager.h"
#include "kv/step_inputs.h"
#include "realizar/error.h"
#include "realizar/quant.h"
#include "util/thread_pool.h"

namespace realizar {
namespace {

constexpr int64_t kMaxStepTokens = 512;     // larger batches run as several steps
constexpr int64_t kMatvecMaxTokens = 8;     // int8 activations: matvec up to this many tokens,
constexpr int64_t kMmaMaxTokens = 64;       // float16 tensor-core products on the quantized
                                            // weights up to this many, above (prefill):
                                            // dequantize + cuBLAS GEMM (measured crossover:
                                            // docs/perf-notes.md, "Second attempt" table)
constexpr int64_t kMaxOutputRows = 64;      // logits rows computed per LM-head pass
constexpr int64_t kGraphMaxTokens = 64;     // steps of at most this many tokens are graphed,
constexpr size_t kMaxGraphs = 256;          // and at most this many graphs are held
constexpr int64_t kMaxSplitRows = 2048;     // rows of attention partials (split key ranges)
constexpr int64_t kGemmScratchElements = int64_t{64} << 20;  // float16 weights per GEMM pass
constexpr size_t kHalfCopyReserve = size_t{2} << 30;  // device memory left free beside the copies
constexpr double kHalfCopyMargin = 0.97;    // the copies take steps where they are this much faster

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) fail("CUDA error in {}: {}", what, cudaGetErrorString(status));
}

void check(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS) fail("cuBLAS error {} in {}", static_cast<int>(status), what);
}

struct DeviceFree {
  void operator()(void* p) const { cudaFree(p); }
};
struct HostFree {
  void operator()(void* p) const { cudaFreeHost(p); }
};
using DeviceMemory = std::unique_ptr<void, DeviceFree>;
using PinnedMemory = std::unique_ptr<void, HostFree>;

DeviceMemory device_alloc(size_t bytes, const char* what) {
  void* p = nullptr;
  if (cudaMalloc(&p, std::max<size_t>(bytes, 256)) != cudaSuccess) {
    cudaGetLastError();
    fail("CUDA: out of device memory allocating {} ({:.1f} MiB)", what, bytes / 1048576.0);
  }
  return DeviceMemory(p);
}

size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

// Device copies of the weights: matrices in one arena in ggml block layout, vectors (norms,
// biases) as float32.
struct DeviceLayer {
  cuda::DeviceMatrix q, k, v, o, gate, up, down;
  const float *attn_norm = nullptr, *attn_norm_bias = nullptr;
  const float *q_bias = nullptr, *k_bias = nullptr, *v_bias = nullptr, *o_bias = nullptr;
  const float *ffn_norm = nullptr, *up_bias = nullptr, *down_bias = nullptr;
};

class WeightUploader {
 public:
  explicit WeightUploader(const ModelWeights& w) {
    // Size the arena: every distinct matrix once (tied embeddings share), every vector.
    auto count = [&](const WeightTensor& t, bool matrix) {
      if (!t.present()) return;
      if (!matrix) {
        vector_bytes_ += round_up(static_cast<size_t>(t.cols * t.rows) * sizeof(float), 256);
      } else if (offsets_.emplace(t.data, matrix_bytes_).second) {
        matrix_bytes_ += round_up(static_cast<size_t>(t.rows) * t.row_bytes, 256);
      }
    };
    count(w.token_embd, true);
    count(w.output, true);
    for (const WeightTensor* v : {&w.output_norm, &w.output_norm_bias, &w.output_bias}) count(*v, false);
    for (const LayerWeights& l : w.layers) {
      for (const WeightTensor* m : {&l.attn_q, &l.attn_k, &l.attn_v, &l.attn_output, &l.ffn_gate,
                                    &l.ffn_up, &l.ffn_down}) {
        count(*m, true);
      }
      for (const WeightTensor* v : {&l.attn_norm, &l.attn_norm_bias, &l.attn_q_bias, &l.attn_k_bias,
                                    &l.attn_v_bias, &l.attn_output_bias, &l.ffn_norm, &l.ffn_up_bias,
                                    &l.ffn_down_bias}) {
        count(*v, false);
      }
    }
    arena_ = device_alloc(matrix_bytes_ + vector_bytes_, "weights");
  }

  cuda::DeviceMatrix matrix(const WeightTensor& t, const char* name) {
    if (!t.present()) return {};
    if (!cuda::matrix_type_supported(static_cast<uint32_t>(t.type), t.cols)) {
      fail("CUDA backend: weight {} of type {} with {} columns is not supported", name,
           tensor_type_name(t.type), t.cols);
    }
    const size_t offset = offsets_.at(t.data);
    uint8_t* dst = static_cast<uint8_t*>(arena_.get()) + offset;
    if (uploaded_.insert(offset).second) {
      check(cudaMemcpy(dst, t.data, static_cast<size_t>(t.rows) * t.row_bytes,
                       cudaMemcpyHostToDevice),
            "weight upload");
    }
    return {static_cast<uint32_t>(t.type), t.rows, t.cols, t.row_bytes, dst};
  }

  const float* vector(const WeightTensor& t) {
    if (!t.present()) return nullptr;
    std::vector<float> values(static_cast<size_t>(t.rows * t.cols));
    for (int64_t r = 0; r < t.rows; ++r) {
      dequantize_row(t.type, t.row(r), values.data() + r * t.cols, t.cols);
    }
    auto* dst = reinterpret_cast<float*>(static_cast<uint8_t*>(arena_.get()) + matrix_bytes_ +
                                         vector_used_);
    vector_used_ += round_up(values.size() * sizeof(float), 256);
    check(cudaMemcpy(dst, values.data(), values.size() * sizeof(float), cudaMemcpyHostToDevice),
          "vector upload");
    return dst;
  }

  DeviceMemory release() { return std::move(arena_); }

 private:
  std::unordered_map<const uint8_t*, size_t> offsets_;
  std::set<size_t> uploaded_;
  size_t matrix_bytes_ = 0, vector_bytes_ = 0, vector_used_ = 0;
  DeviceMemory arena_;
};

class CudaBackend final : public Backend {
 public:
  CudaBackend(const ModelConfig& config, const ModelWeights& weights, const BackendOptions& options)
      : config_(config),
        cache_slots_(options.cache_slots),
        packer_(kMaxStepTokens,
                kMaxStepTokens * ((std::max<int64_t>(options.max_sequence_length, 1) + kKvBlockSize - 1) / kKvBlockSize),
                query_tiling(config)) {
    validate_config();
    check(cudaSetDevice(0), "cudaSetDevice");
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "stream");
    check(cudaEventCreateWithFlags(&upload_done_, cudaEventDisableTiming), "event");
    check(cublasCreate(&cublas_), "cublasCreate");
    check(cublasSetStream(cublas_, stream_), "cublasSetStream");
    upload_weights(weights);
    allocate_scratch();
    if (options.half_weight_copies != HalfWeightCopies::Off && keep_half_copies()) {
      half_copies_ = true;
      choose_half_copy_steps(options.half_weight_copies);
    }
    const char* graphs = std::getenv("REALIZAR_CUDA_GRAPHS");
    use_graphs_ = graphs == nullptr || std::string_view(graphs) != "0";
  }

  ~CudaBackend() override {
    if (cublas_ != nullptr) cublasDestroy(cublas_);
    if (upload_done_ != nullptr) cudaEventDestroy(upload_done_);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  std::string_view name() const override { return "cuda"; }
  // E.g. "float16 weight copies: 13.2 GiB, steps of 5-8 and 33+ tokens".
  std::string detail() const override {
    if (!half_copies_) return {};
    std::vector<std::string> ranges;
    for (int64_t t = 2; t <= kMmaMaxTokens + 1; ++t) {
      if (!takes_half_copies(t)) continue;
      const int64_t first = t;
      while (t <= kMmaMaxTokens && takes_half_copies(t + 1)) ++t;
      ranges.push_back(t > kMmaMaxTokens ? fmt::format("{}+", first) : fmt::format("{}-{}", first, t));
    }
    const std::string steps = fmt::format("steps of {} tokens", fmt::join(ranges, " and "));
    if (half_weight_bytes_ == 0) return "cuBLAS on the float16 weights for " + steps;  // a float16 model
    return fmt::format("float16 weight copies: {:.1f} GiB, {}", static_cast<double>(half_weight_bytes_) / (1 << 30), steps);
  }
  const ModelConfig& config() const override { return config_; }
  int64_t cache_slots() const override { return cache_slots_; }
  int64_t kv_bytes_per_token() const override {
    return kv_cache_bytes_per_token(config_, sizeof(uint16_t));
  }

  void copy_blocks(std::span<const BlockCopy> copies) override {
    const size_t block_bytes = static_cast<size_t>(kKvBlockSize * config_.kv_dim()) * sizeof(uint16_t);
    for (const BlockCopy& c : copies) {
      for (const DeviceMemory& layer : cache_) {
        auto* base = static_cast<uint8_t*>(layer.get());
        check(cudaMemcpyAsync(base + c.to * block_bytes, base + c.from * block_bytes, block_bytes,
                              cudaMemcpyDeviceToDevice, stream_),
              "KV block copy");
      }
    }
    check(cudaStreamSynchronize(stream_), "KV block copy");
  }

  void forward(const Batch& batch, const KvStep& cache, std::vector<float>& logits) override {
    logits.resize(batch.output_count() * static_cast<size_t>(config_.vocab_size));
    run_batch(batch, cache, Results{ResultMode::Logits, logits.data(), nullptr}, {});
  }

  // Rows are sampled on the device when they can all be (plain greedy rows by argmax_rows, the
  // others by sample_rows), so such a step hands back token ids only; otherwise the step's logits
  // go to the host sampler.
  void sample(const Batch& batch, const KvStep& cache, std::span<const RowSampling> rows,
              std::vector<SampledToken>& out) override {
    if (rows.size() != batch.output_count()) {
      fail("sample: {} sampling rows for {} output rows", rows.size(), batch.output_count());
    }
    const bool greedy = std::all_of(rows.begin(), rows.end(), [](const RowSampling& r) {
      return r.params.is_plain_greedy() && r.top_logprobs < 0;
    });
    ResultMode mode = ResultMode::Greedy;
    if (!greedy) {
      if (!sampler_.serves(rows)) return Backend::sample(batch, cache, rows, out);
      mode = cuda::DeviceSampler::wants_logprobs(rows) ? ResultMode::SampledLogprobs : ResultMode::Sampled;
    }
    out.resize(rows.size());
    run_batch(batch, cache, Results{mode, nullptr, out.data()}, rows);
  }

 private:
  struct Step {
    int64_t tokens = 0;
    int64_t outputs = 0;
    cuda::AttentionPlan attention;
  };

  // What a step hands back for its wanted rows: their logits, their greedy picks (argmax_rows),
  // or their sampled tokens (sample_rows), with log-probabilities or without.
  enum class ResultMode { Logits, Greedy, Sampled, SampledLogprobs };

  // Where the results go, from the batch's first wanted row on: logits ([rows x vocab]) or one
  // SampledToken per row.
  struct Results {
    ResultMode mode;
    float* logits;
    SampledToken* sampled;

    Results from_row(int64_t row, int64_t vocab) const {
      return mode == ResultMode::Logits ? Results{mode, logits + row * vocab, nullptr} : Results{mode, nullptr, sampled + row};
    }
  };

  // `rows`: every wanted row's sampling, for the Sampled modes.
  void run_batch(const Batch& batch, const KvStep& cache, Results results, std::span<const RowSampling> rows) {
    batch.check_tokens(config_.vocab_size);
    int64_t done = 0;
    for (size_t begin = 0; begin < batch.size(); begin += kMaxStepTokens) {
      const size_t end = std::min(batch.size(), begin + static_cast<size_t>(kMaxStepTokens));
      const Step step = upload_step(batch, cache, begin, end, results.mode, rows, done);
      run_step(step, results.from_row(done, config_.vocab_size));
      done += step.outputs;
    }
  }

  // Prompt chunks go to the flash-attention kernel in tiles of its size (none for a GQA shape
  // validate_config rejects).
  static QueryTiling query_tiling(const ModelConfig& c) {
    if (c.head_count_kv < 1 || c.head_count % c.head_count_kv != 0 || c.head_count / c.head_count_kv > 8) return {};
    return {cuda::kFlashMinTokens, cuda::flash_tile_tokens(static_cast<int>(c.head_count / c.head_count_kv))};
  }

  void validate_config() const {
    const ModelConfig& c = config_;
    if (c.head_dim % 8 != 0 || c.head_dim > 128) {
      fail("CUDA backend: head_dim {} is not supported (multiples of 8 up to 128)", c.head_dim);
    }
    if (c.head_count % c.head_count_kv != 0 || c.head_count / c.head_count_kv > 8) {
      fail("CUDA backend: {} query heads over {} KV heads is not supported (at most 8 per KV head)",
           c.head_count, c.head_count_kv);
    }
    if (!cuda::norm_width_supported(c.embedding_length)) {
      fail("CUDA backend: embedding length {} is not supported (multiples of 4 up to 16384)",
           c.embedding_length);
    }
    if (c.rope_dim % 2 != 0 || c.rope_dim > c.head_dim) {
      fail("CUDA backend: rope_dim {} is not supported", c.rope_dim);
    }
  }

  void upload_weights(const ModelWeights& w) {
    WeightUploader up(w);
    embedding_ = up.matrix(w.token_embd, "token_embd.weight");
    output_ = up.matrix(w.output, "output.weight");
    output_norm_ = up.vector(w.output_norm);
    output_norm_bias_ = up.vector(w.output_norm_bias);
    output_bias_ = up.vector(w.output_bias);
    for (size_t i = 0; i < w.layers.size(); ++i) {
      const LayerWeights& l = w.layers[i];
      DeviceLayer d;
      d.q = up.matrix(l.attn_q, "attn_q");
      d.k = up.matrix(l.attn_k, "attn_k");
      d.v = up.matrix(l.attn_v, "attn_v");
      d.o = up.matrix(l.attn_output, "attn_output");
      d.gate = up.matrix(l.ffn_gate, "ffn_gate");
      d.up = up.matrix(l.ffn_up, "ffn_up");
      d.down = up.matrix(l.ffn_down, "ffn_down");
      d.attn_norm = up.vector(l.attn_norm);
      d.attn_norm_bias = up.vector(l.attn_norm_bias);
      d.q_bias = up.vector(l.attn_q_bias);
      d.k_bias = up.vector(l.attn_k_bias);
      d.v_bias = up.vector(l.attn_v_bias);
      d.o_bias = up.vector(l.attn_output_bias);
      d.ffn_norm = up.vector(l.ffn_norm);
      d.up_bias = up.vector(l.ffn_up_bias);
      d.down_bias = up.vector(l.ffn_down_bias);
      layers_.push_back(d);
    }
    weights_memory_ = up.release();
    max_matrix_cols_ = std::max({config_.embedding_length, config_.q_dim(), config_.feed_forward_length});
  }

  float* floats(int64_t count, const char* what) {
    buffers_.push_back(device_alloc(static_cast<size_t>(count) * sizeof(float), what));
    return static_cast<float*>(buffers_.back().get());
  }

  void allocate_scratch() {
    const ModelConfig& c = config_;
    const int64_t t = kMaxStepTokens;
    x_ = floats(t * c.embedding_length, "activations");
    h_ = floats(t * c.embedding_length, "activations");
    q_ = floats(t * c.q_dim(), "activations");
    k_ = floats(2 * t * c.kv_dim(), "activations");  // K then V, and gate then up: one buffer each
    v_ = k_ + t * c.kv_dim();                         // (pair_on_copies needs one output stride)
    attn_ = floats(t * c.q_dim(), "activations");
    gate_ = floats(2 * t * c.feed_forward_length, "activations");
    up_ = gate_ + t * c.feed_forward_length;
    out_x_ = floats(kMaxOutputRows * c.embedding_length, "output rows");
    out_h_ = floats(kMaxOutputRows * c.embedding_length, "output rows");
    logits_ = floats(kMaxOutputRows * c.vocab_size, "logits");
    tokens_ = reinterpret_cast<int32_t*>(floats(kMaxOutputRows, "greedy tokens"));
    partial_o_ = floats(kMaxSplitRows * c.q_dim(), "attention partials");
    partial_ml_ = floats(kMaxSplitRows * c.head_count * 2, "attention partials");
    // float16 scratch for the GEMM path (2 bytes each: half as many floats).
    int64_t largest = 0;
    for (const cuda::DeviceMatrix* m : matrix_uses()) largest = std::max(largest, m->rows * m->cols);
    gemm_weights_ = floats((std::min(largest, kGemmScratchElements) + 1) / 2, "GEMM weights");
    gemm_x_ = floats((t * max_matrix_cols_ + 1) / 2, "GEMM activations");
    // int8 activations for the matvec path (1 byte each, plus a float pair per 32).
    x_q8_.q = reinterpret_cast<int8_t*>(floats((kMatvecMaxTokens * max_matrix_cols_ + 3) / 4, "int8 activations"));
    x_q8_.ds = floats(kMatvecMaxTokens * max_matrix_cols_ / 16, "int8 activation scales");
    cublas_workspace_ = device_alloc(size_t{32} << 20, "cuBLAS workspace");
    check(cublasSetWorkspace(cublas_, cublas_workspace_.get(), size_t{32} << 20), "cublasSetWorkspace");

    const size_t cache_bytes =
        static_cast<size_t>(cache_slots_ * c.kv_dim()) * sizeof(uint16_t);
    for (int64_t l = 0; l < c.block_count; ++l) {
      cache_.push_back(device_alloc(cache_bytes, "KV cache"));
      cache_.push_back(device_alloc(cache_bytes, "KV cache"));
    }
    std::vector<double> inv_freq(static_cast<size_t>(c.rope_dim / 2));
    for (size_t i = 0; i < inv_freq.size(); ++i) {
      inv_freq[i] = std::pow(static_cast<double>(c.rope_freq_base),
                             -2.0 * static_cast<double>(i) / static_cast<double>(c.rope_dim));
    }
    inv_freq_ = device_alloc(inv_freq.size() * sizeof(double), "RoPE frequencies");
    check(cudaMemcpy(inv_freq_.get(), inv_freq.data(), inv_freq.size() * sizeof(double),
                     cudaMemcpyHostToDevice),
          "RoPE frequencies");

    step_device_ = device_alloc(static_cast<size_t>(packer_.layout().total) * sizeof(int32_t), "step inputs");
    void* pinned = nullptr;
    check(cudaMallocHost(&pinned, static_cast<size_t>(packer_.layout().total) * sizeof(int32_t)), "pinned");
    step_host_.reset(pinned);
    check(cudaMallocHost(&pinned, static_cast<size_t>(kMaxOutputRows * c.vocab_size) * sizeof(float)),
          "pinned logits");
    logits_host_.reset(pinned);
    check(cudaMallocHost(&pinned, kMaxOutputRows * sizeof(int32_t)), "pinned tokens");
    tokens_host_.reset(pinned);
  }

  // Device memory left idle once the weights, the KV cache and the scratch are allocated holds a
  // float16 copy of every matrix the linear layers read (the LM head included, the embedding
  // table not), when all of them fit with kHalfCopyReserve to spare: batched steps then multiply
  // with cuBLAS on the copies instead of dequantizing on every step (docs/perf-notes.md, "Float16
  // weight copies"). REALIZAR_CUDA_HALF_WEIGHTS=0 keeps the memory free.
  // Returns whether it keeps them.
  bool keep_half_copies() {
    const char* env = std::getenv("REALIZAR_CUDA_HALF_WEIGHTS");
    if (env != nullptr && std::string_view(env) == "0") return false;
    std::vector<cuda::DeviceMatrix*> matrices;
    for (cuda::DeviceMatrix* m : matrix_uses()) {
      if (m->type == static_cast<uint32_t>(TensorType::F16)) {
        m->half = m->data;  // already float16
      } else {
        matrices.push_back(m);
      }
    }
    size_t bytes = 0;
    for (const cuda::DeviceMatrix* m : matrices) bytes += half_copy_bytes(*m);
    size_t free = 0, total = 0;
    check(cudaMemGetInfo(&free, &total), "cudaMemGetInfo");
    const size_t reserve = std::max(kHalfCopyReserve, total / 20);
    if (bytes + reserve > free) return false;
    half_weights_ = device_alloc(bytes, "float16 weight copies");
    auto* next = static_cast<uint8_t*>(half_weights_.get());
    for (cuda::DeviceMatrix* m : matrices) {
      if (m->data == nullptr) continue;  // absent (phi-2 has no gate)
      cuda::dequantize_to_half(*m, 0, m->rows, next, stream_);
      m->half = next;
      next += half_copy_bytes(*m);
    }
    check(cudaStreamSynchronize(stream_), "float16 weight copies");
    half_weight_bytes_ = bytes;
    return true;
  }

  // Which steps of 2-64 tokens multiply with the copies. The ranges are those where the other
  // path's cost changes shape (the int8 matvec's grows with each token up to 8, the tensor-core
  // product's with each 32-token tile); in each, the linear layers of every layer are timed on
  // both paths (the int8 matvec or the tensor-core product against cuBLAS on the copies) at the
  // range's two ends, and where the ends disagree the range is halved until they agree or meet
  // (the winner is taken to change once inside a range). The copies take a size when they are
  // kHalfCopyMargin faster. Which wins depends on the model and the GPU (H200, 7B: the copies win
  // 17-token steps and lose 32-token ones, although the product's work is the same at both;
  // docs/perf-notes.md, "Float16 weight copies").
  void choose_half_copy_steps(HalfWeightCopies mode) {
    constexpr std::array<std::pair<int64_t, int64_t>, 6> kRanges{{{2, 4}, {5, 6}, {7, 8}, {9, 16}, {17, 32}, {33, 64}}};
    if (mode != HalfWeightCopies::Measured) {
      copies_win_.fill(true);
      return;
    }
    std::map<int64_t, bool> measured;
    const auto copies_win = [&](int64_t tokens) {
      const auto [at, fresh] = measured.try_emplace(tokens, false);
      if (fresh) at->second = time_linears(tokens, true) < kHalfCopyMargin * time_linears(tokens, false);
      return at->second;
    };
    for (const auto& [low, high] : kRanges) decide_half_copy_range(low, high, copies_win);
  }

  template <class Measure>
  void decide_half_copy_range(int64_t low, int64_t high, Measure& copies_win) {
    const bool at_low = copies_win(low), at_high = copies_win(high);
    if (at_low == at_high || high - low <= 1) {
      for (int64_t t = low; t < high; ++t) copies_win_[static_cast<size_t>(t)] = at_low;
      copies_win_[static_cast<size_t>(high)] = at_high;
      return;
    }
    const int64_t middle = (low + high) / 2;
    decide_half_copy_range(low, middle, copies_win);
    decide_half_copy_range(middle, high, copies_win);
  }

  // Milliseconds for the linear layers of every layer at a step of `tokens` tokens (zero inputs),
  // with or without the copies: the best of two replays of them captured as a graph, as steps of
  // up to kGraphMaxTokens run (timing the launches themselves would measure the host's speed).
  double time_linears(int64_t tokens, bool copies) {
    const bool saved = copies_win_[static_cast<size_t>(tokens)];
    copies_win_[static_cast<size_t>(tokens)] = copies;
    const ModelConfig& c = config_;
    for (const auto& [buffer, cols] : {std::pair{h_, c.embedding_length}, std::pair{x_, c.embedding_length},
                                        std::pair{attn_, c.q_dim()}, std::pair{up_, c.feed_forward_length}}) {
      check(cudaMemsetAsync(buffer, 0, static_cast<size_t>(tokens * cols) * sizeof(float), stream_),
            "linear timing inputs");
    }
    cudaGraphExec_t exec = instantiate(capture([&] { enqueue_linears(tokens); }));
    cudaEvent_t start = nullptr, stop = nullptr;
    check(cudaEventCreate(&start), "event");
    check(cudaEventCreate(&stop), "event");
    double best = std::numeric_limits<double>::infinity();
    for (int pass = 0; pass < 3; ++pass) {  // the first warms up
      check(cudaEventRecord(start, stream_), "event record");
      check(cudaGraphLaunch(exec, stream_), "graph launch");
      check(cudaEventRecord(stop, stream_), "event record");
      check(cudaEventSynchronize(stop), "linear timing");
      float ms = 0;
      check(cudaEventElapsedTime(&ms, start, stop), "event time");
      if (pass > 0) best = std::min(best, static_cast<double>(ms));
    }
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    cudaGraphExecDestroy(exec);
    copies_win_[static_cast<size_t>(tokens)] = saved;
    return best;
  }

  // The linear layers of every layer (and the MLP's activation between them), as enqueue_layers
  // runs them, on the scratch inputs.
  void enqueue_linears(int64_t tokens) {
    for (const DeviceLayer& w : layers_) {
      LinearInput normed{h_, tokens};
      project_qkv(w, normed);
      LinearInput attended{attn_, tokens};
      linear(w.o, attended, x_, config_.embedding_length, w.o_bias, true);
      LinearInput normed_again{h_, tokens};
      feed_forward(w, normed_again);
    }
  }

  // The matrices the linear layers multiply (the LM head included; the embedding table, which it
  // may share, is gathered by rows and keeps its own entry).
  std::vector<cuda::DeviceMatrix*> matrix_uses() {
    std::vector<cuda::DeviceMatrix*> uses{&output_};
    for (DeviceLayer& l : layers_) {
      for (cuda::DeviceMatrix* m : {&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down}) uses.push_back(m);
    }
    return uses;
  }

  // 16-byte aligned (cuBLAS's fast kernels), so that consecutive matrices of one shape (K and V,
  // gate and up) lie end to end for pair_on_copies whenever rows x cols is a multiple of 8.
  static size_t half_copy_bytes(const cuda::DeviceMatrix& m) {
    return m.data == nullptr ? 0 : round_up(static_cast<size_t>(m.rows * m.cols) * sizeof(uint16_t), 16);
  }

  const StepLayout& layout() const { return packer_.layout(); }
  const int32_t* device_field(int64_t offset) const {
    return static_cast<const int32_t*>(step_device_.get()) + offset;
  }

  // Packs tokens [begin, end) of the batch into the pinned staging area and copies it to the
  // device, with the sampling of the step's rows (those of `rows` from `first_row` on) in the
  // Sampled modes; returns the step's shape.
  Step upload_step(const Batch& batch, const KvStep& cache, size_t begin, size_t end, ResultMode mode,
                   std::span<const RowSampling> rows, int64_t first_row) {
    check(cudaEventSynchronize(upload_done_), "previous upload");  // staging is free again
    const StepShape shape =
        packer_.pack(batch, cache.slots, begin, end, cache.kv, static_cast<int32_t*>(step_host_.get()));
    check(cudaMemcpyAsync(step_device_.get(), step_host_.get(),
                          static_cast<size_t>(shape.used) * sizeof(int32_t), cudaMemcpyHostToDevice,
                          stream_),
          "step upload");
    if (mode == ResultMode::Sampled || mode == ResultMode::SampledLogprobs) {
      sampler_.upload(rows.subspan(static_cast<size_t>(first_row), static_cast<size_t>(shape.outputs)), stream_);
    }
    check(cudaEventRecord(upload_done_, stream_), "event record");
    const cuda::AttentionWork work{shape.decode_tokens, shape.decode_max_length, shape.tiles, shape.tile_max_length};
    return Step{shape.tokens, shape.outputs,
                cuda::plan_attention(attention_params(), work, static_cast<int>(multiprocessors_), kMaxSplitRows)};
  }

  cuda::AttentionParams attention_params() const {
    const ModelConfig& c = config_;
    return {static_cast<int>(c.head_count), static_cast<int>(c.head_count_kv), static_cast<int>(c.head_dim),
            static_cast<int>(kKvBlockSize), static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.head_dim)))};
  }

  void run_step(const Step& step, Results out) {
    const ResultMode mode = out.mode;
    const bool graphed = use_graphs_ && step.tokens <= kGraphMaxTokens && step.outputs <= kMaxOutputRows;
    if (!graphed) {
      enqueue_layers(step);
      for (int64_t begin = 0; begin < step.outputs; begin += kMaxOutputRows) {
        const int64_t count = std::min(kMaxOutputRows, step.outputs - begin);
        enqueue_output(begin, count, mode);
        check(cudaStreamSynchronize(stream_), "step");
        copy_results(out, begin, count);
      }
      check(cudaGetLastError(), "step kernels");
      return;
    }
    const cuda::AttentionPlan& a = step.attention;
    const cuda::GraphKey key{step.tokens,      a.decode_splits, step.outputs, static_cast<int>(mode),
                             a.decode_tokens, a.tiles,         a.tile_splits};
    cudaGraphExec_t exec = graphs_.find(key);
    if (exec == nullptr) {
      cudaGraph_t graph = capture([&] {
        enqueue_layers(step);
        if (step.outputs > 0) enqueue_output(0, step.outputs, mode);
      });
      if (std::getenv("REALIZAR_CUDA_GRAPH_STATS") != nullptr) print_graph_size(graph, step);
      exec = instantiate(graph);
      graphs_.insert(key, exec);
    }
    check(cudaGraphLaunch(exec, stream_), "graph launch");
    check(cudaStreamSynchronize(stream_), "step");
    copy_results(out, 0, step.outputs);
  }

  // The work `enqueue` puts on the stream, captured as a graph (not run).
  template <typename Enqueue>
  cudaGraph_t capture(Enqueue&& enqueue) {
    cudaGraph_t graph = nullptr;
    check(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal), "begin capture");
    try {
      enqueue();
    } catch (...) {  // a launch failed: the stream must leave capture mode before the error goes up
      cudaStreamEndCapture(stream_, &graph);
      if (graph != nullptr) cudaGraphDestroy(graph);
      throw;
    }
    check(cudaStreamEndCapture(stream_, &graph), "end capture");
    return graph;
  }

  // An executable graph of `graph`, which it destroys.
  static cudaGraphExec_t instantiate(cudaGraph_t graph) {
    cudaGraphExec_t exec = nullptr;
    const cudaError_t status = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    check(status, "graph instantiate");
    return exec;
  }

  // Output rows [begin, begin + rows) of the step from the pinned buffers (logits and greedy
  // picks: those of the pass, at their start; sampled tokens: the sampler's, by step row).
  void copy_results(Results out, int64_t begin, int64_t rows) {
    switch (out.mode) {
      case ResultMode::Logits:
        return copy_logits(out.logits + begin * config_.vocab_size, rows);
      case ResultMode::Greedy:
        return copy_greedy(out.sampled + begin, rows);
      case ResultMode::Sampled:
      case ResultMode::SampledLogprobs:
        return sampler_.collect(begin, rows, out.mode == ResultMode::SampledLogprobs,
                                std::span<SampledToken>(out.sampled, static_cast<size_t>(begin + rows)));
    }
    fail("CUDA backend: unknown result mode {}", static_cast<int>(out.mode));
  }

  void copy_greedy(SampledToken* out, int64_t rows) const {
    const int32_t* picked = static_cast<const int32_t*>(tokens_host_.get());
    for (int64_t row = 0; row < rows; ++row) {
      SampledToken& o = out[row];
      o.top.clear();
      o.error.clear();
      o.token = picked[row];
      if (o.token == cuda::kArgmaxNaN) o.error = fmt::format("the logits of output row {} hold a NaN", row);
      if (o.token == cuda::kArgmaxAllNegativeInfinity) {
        o.error = fmt::format("every logit of output row {} is -inf, nothing can be picked", row);
      }
      if (!o.error.empty()) o.token = -1;
    }
  }

  // Copies `rows` logits rows from the pinned buffer. A parallel decode step returns tens of MB
  // (32 rows of a 152k vocabulary: 19 MB), which one thread copies at host memory speed in
  // milliseconds; large copies are spread over a few threads.
  void copy_logits(float* out, int64_t rows) {
    const float* src = static_cast<const float*>(logits_host_.get());
    const int64_t n = rows * config_.vocab_size;
    constexpr int64_t kParallelFloats = int64_t{1} << 20;  // 4 MB
    if (n < kParallelFloats) {
      std::memcpy(out, src, static_cast<size_t>(n) * sizeof(float));
      return;
    }
    copy_pool_.parallel_for(n, [&](int64_t begin, int64_t end, int) {
      std::memcpy(out + begin, src + begin, static_cast<size_t>(end - begin) * sizeof(float));
    });
  }

  // Kernel launches per step, the decode cost the fusions cut (docs/perf-notes.md, "CUDA backend").
  void print_graph_size(cudaGraph_t graph, const Step& step) const {
    size_t nodes = 0;
    check(cudaGraphGetNodes(graph, nullptr, &nodes), "graph nodes");
    const cuda::AttentionPlan& a = step.attention;
    std::fprintf(stderr,
                 "cuda graph: %lld tokens (%lld decode x %d splits, %lld tiles x %d splits), %zu nodes (%.1f per layer)\n",
                 static_cast<long long>(step.tokens), static_cast<long long>(a.decode_tokens), a.decode_splits,
                 static_cast<long long>(a.tiles), a.tile_splits, nodes,
                 static_cast<double>(nodes) / static_cast<double>(layers_.size()));
  }

  // The input of one or more linear layers: float32 [tokens x cols], and whether its int8 copy in
  // x_q8_ and its float16 copy in gemm_x_ are already made. Those buffers are shared: making a new
  // LinearInput ends the last one's use of them (consumers of an input are enqueued before the
  // next input is made).
  struct LinearInput {
    const float* x;
    int64_t tokens;
    bool quantized = false;
    bool halved = false;
  };

  // Whether a step of `tokens` tokens multiplies weights of `type` with matmul_dequant_mma: the
  // quantized types it has a kernel for (those of matvec_int8, matvec_reads_int8) at
  // kMatvecMaxTokens < tokens <= kMmaMaxTokens; the float types and larger steps take linear_gemm.
  static bool takes_mma(uint32_t type, int64_t tokens) {
    return tokens > kMatvecMaxTokens && tokens <= kMmaMaxTokens && cuda::matvec_reads_int8(type);
  }

  // Whether a step of `tokens` tokens multiplies `w` with cuBLAS on its float16 copy.
  bool takes_half_copy(const cuda::DeviceMatrix& w, int64_t tokens) const {
    return w.half != nullptr && takes_half_copies(tokens);
  }
  bool takes_half_copies(int64_t tokens) const {
    return tokens > kMmaMaxTokens || copies_win_[static_cast<size_t>(tokens)];
  }

  // y = W x (+ bias) (+ y when accumulating) for the input's rows ([tokens x W.cols]).
  void linear(const cuda::DeviceMatrix& w, LinearInput& in, float* y, int64_t ldy, const float* bias,
              bool accumulate) {
    const int64_t tokens = in.tokens;
    if (takes_half_copy(w, tokens)) {
      linear_gemm(w, in, y, ldy, bias, accumulate);
    } else if (tokens <= kMatvecMaxTokens && cuda::matvec_reads_int8(w.type)) {
      quantize_input(in, w.cols);
      cuda::matvec_int8(w, x_q8_, y, ldy, bias, accumulate, tokens, stream_);
    } else if (tokens <= kMatvecMaxTokens) {
      cuda::matvec(w, in.x, w.cols, y, ldy, bias, accumulate, tokens, stream_);
    } else if (takes_mma(w.type, tokens)) {
      cuda::matmul_dequant_mma(w, half_input(in, w.cols), y, ldy, bias, accumulate, tokens, stream_);
    } else {
      linear_gemm(w, in, y, ldy, bias, accumulate);
    }
  }

  void quantize_input(LinearInput& in, int64_t cols) {
    if (in.quantized) return;
    cuda::quantize_activations(in.x, cols, in.tokens, x_q8_, stream_);
    in.quantized = true;
  }

  const void* half_input(LinearInput& in, int64_t cols) {
    if (!in.halved) cuda::float_to_half(in.x, gemm_x_, in.tokens * cols, stream_);
    in.halved = true;
    return gemm_x_;
  }

  // The copies of an input of `cols` values per token that the kernel making it writes: the int8
  // blocks in x_q8_ for the matvec path, the float16 values in gemm_x_ for the others.
  cuda::InputCopy fused_copy(int64_t tokens, int64_t cols) const {
    if (tokens > kMatvecMaxTokens || takes_half_copies(tokens)) return {{}, gemm_x_};
    return {cols % 32 == 0 ? x_q8_ : cuda::ActivationsQ8{}, nullptr};
  }

  static LinearInput made_with(const float* x, int64_t tokens, const cuda::InputCopy& copy) {
    return LinearInput{x, tokens, copy.q8.q != nullptr, copy.half != nullptr};
  }

  // Whether a step of `tokens` tokens multiplies `w` in a grouped launch (linear_parts): the
  // int8 matvec or the tensor-core product.
  bool takes_grouped(const cuda::DeviceMatrix& w, int64_t tokens) const {
    if (takes_half_copy(w, tokens)) return false;
    return tokens <= kMatvecMaxTokens ? cuda::matvec_reads_int8(w.type) : takes_mma(w.type, tokens);
  }

  // linear() of several matrices reading the same input (Q, K, V; gate, up). Consecutive
  // matrices of one type that take the int8 matvec or the tensor-core product share a launch.
  // Parts whose output is not Rows (Q, K and V with their RoPE and KV cache write, `kv`) need
  // the int8 matvec for every part.
  void linear_parts(std::initializer_list<cuda::MatvecPart> parts, LinearInput& in, bool accumulate,
                    const cuda::KvWrite* kv = nullptr) {
    const int64_t tokens = in.tokens;
    const auto grouped = [&](const cuda::DeviceMatrix& w) { return takes_grouped(w, tokens); };
    cuda::MatvecPart run[cuda::kMaxMatvecParts];
    int run_size = 0;
    auto flush = [&] {
      if (run_size == 0) return;
      if (tokens <= kMatvecMaxTokens) {
        quantize_input(in, run[0].w.cols);
        cuda::matvec_int8_parts(run, run_size, x_q8_, accumulate, tokens, stream_, kv);
      } else {
        cuda::matmul_dequant_mma_parts(run, run_size, half_input(in, run[0].w.cols), accumulate, tokens, stream_);
      }
      run_size = 0;
    };
    for (auto part_it = parts.begin(); part_it != parts.end(); ++part_it) {
      const cuda::MatvecPart& part = *part_it;
      if (part.output != cuda::PartOutput::Rows && !grouped(part.w)) {
        fail("CUDA backend: a Q/K/V part with its RoPE off the int8 matvec");
      }
      if (std::next(part_it) != parts.end() && pair_on_copies(part, *std::next(part_it), tokens)) {
        flush();
        linear_pair_on_copies(part, *std::next(part_it), in, accumulate);
        ++part_it;
        continue;
      }
      if (!grouped(part.w)) {
        flush();
        linear(part.w, in, part.y, part.ldy, part.bias, accumulate);
        continue;
      }
      if (run_size == cuda::kMaxMatvecParts || (run_size > 0 && run[0].w.type != part.w.type)) flush();
      run[run_size++] = part;
    }
    flush();
  }

  // Whether two parts (K and V; gate and up) multiply their float16 copies in one strided-batched
  // call: same shape, the second copy right after the first, outputs at one stride. One call
  // instead of two saves a launch's latency on the small K and V (9.8 us each on 7B at 32 tokens,
  // for 3.7 MB) and gives the large pair twice the CTAs (7B gate and up: 83.6 us together, 47.3
  // each alone; docs/perf-notes.md, "Float16 weight copies").
  bool pair_on_copies(const cuda::MatvecPart& a, const cuda::MatvecPart& b, int64_t tokens) const {
    return takes_half_copy(a.w, tokens) && takes_half_copy(b.w, tokens) && a.w.rows == b.w.rows &&
           a.w.cols == b.w.cols && a.ldy == b.ldy && b.y > a.y &&
           static_cast<const uint16_t*>(b.w.half) == static_cast<const uint16_t*>(a.w.half) + a.w.rows * a.w.cols;
  }

  void linear_pair_on_copies(const cuda::MatvecPart& a, const cuda::MatvecPart& b, LinearInput& in, bool accumulate) {
    const int64_t tokens = in.tokens, rows = a.w.rows, cols = a.w.cols;
    half_input(in, cols);
    const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    check(cublasGemmStridedBatchedEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(rows), static_cast<int>(tokens),
                                     static_cast<int>(cols), &alpha, a.w.half, CUDA_R_16F, static_cast<int>(cols),
                                     rows * cols, gemm_x_, CUDA_R_16F, static_cast<int>(cols), 0, &beta, a.y,
                                     CUDA_R_32F, static_cast<int>(a.ldy), b.y - a.y, 2, CUBLAS_COMPUTE_32F,
                                     CUBLAS_GEMM_DEFAULT),
          "cublasGemmStridedBatchedEx");
    for (const cuda::MatvecPart* part : {&a, &b}) {
      if (part->bias != nullptr) cuda::add_bias(part->y, part->ldy, part->bias, rows, tokens, stream_);
    }
  }

  // Batches the quantized-weight kernels do not take, and matrices with a float16 copy: cuBLAS on
  // that copy, or on float16 passes of the matrix dequantized into gemm_weights_.
  void linear_gemm(const cuda::DeviceMatrix& w, LinearInput& in, float* y, int64_t ldy,
                   const float* bias, bool accumulate) {
    const int64_t tokens = in.tokens;
    half_input(in, w.cols);
    if (w.half != nullptr) {
      gemm_half(w.half, w.rows, w.cols, tokens, y, ldy, accumulate);
      if (bias != nullptr) cuda::add_bias(y, ldy, bias, w.rows, tokens, stream_);
      return;
    }
    // Passes start at multiples of 64 rows so that every pass's output (y + r0) stays 16-byte
    // aligned: cuBLAS otherwise falls back to its slow 1-element-aligned kernels (measured on the
    // 32B model's 5120-column matrices: 13,107-row passes ran at 311 GB/s).
    const int64_t rows_per_pass =
        std::min(w.rows, std::max<int64_t>(64, kGemmScratchElements / w.cols / 64 * 64));
    for (int64_t r0 = 0; r0 < w.rows; r0 += rows_per_pass) {
      const int64_t rows = std::min(rows_per_pass, w.rows - r0);
      cuda::dequantize_to_half(w, r0, rows, gemm_weights_, stream_);
      gemm_half(gemm_weights_, rows, w.cols, tokens, y + r0, ldy, accumulate);
    }
    if (bias != nullptr) cuda::add_bias(y, ldy, bias, w.rows, tokens, stream_);
  }

  // y[t][r] (+)= sum_c W[r][c] x[t][c] for float16 W [rows x cols] and the float16 input in
  // gemm_x_ ([tokens x cols]); float32 accumulation and output.
  void gemm_half(const void* w, int64_t rows, int64_t cols, int64_t tokens, float* y, int64_t ldy,
                 bool accumulate) {
    const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    check(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(rows), static_cast<int>(tokens),
                       static_cast<int>(cols), &alpha, w, CUDA_R_16F, static_cast<int>(cols), gemm_x_,
                       CUDA_R_16F, static_cast<int>(cols), &beta, y, CUDA_R_32F, static_cast<int>(ldy),
                       CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
          "cublasGemmEx");
  }

  void enqueue_layers(const Step& step) {
    const ModelConfig& c = config_;
    const int64_t n = step.tokens;
    cuda::embed_rows(embedding_, device_field(layout().tokens), n, x_, stream_);
    const cuda::RopeParams rope{static_cast<int>(c.head_count), static_cast<int>(c.head_count_kv),
                                static_cast<int>(c.head_dim), static_cast<int>(c.rope_dim),
                                c.rope_style == RopeStyle::NeoX,
                                static_cast<const double*>(inv_freq_.get())};
    const cuda::AttentionParams attn = attention_params();
    // Without tiles the decode tokens are the step's tokens in order: the kernels skip the list.
    const int32_t* decode_tokens = step.attention.tiles > 0 ? device_field(layout().decode_tokens) : nullptr;
    const cuda::AttentionStep attention_step{device_field(layout().positions), device_field(layout().seq_rows),
                                             device_field(layout().tables),    device_field(layout().stride),
                                             decode_tokens,                    device_field(layout().tiles),
                                             n};
    const cuda::AttentionScratch partials{partial_o_, partial_ml_, kMaxSplitRows};
    const cuda::InputCopy normed_copy = fused_copy(n, c.embedding_length);
    cuda::InputCopy attended_copy = fused_copy(n, c.q_dim());
    if (c.head_dim % 32 != 0) attended_copy.q8 = {};  // the attention kernels' blocks need it
    for (size_t l = 0; l < layers_.size(); ++l) {
      const DeviceLayer& w = layers_[l];
      void* keys = cache_[2 * l].get();
      void* values = cache_[2 * l + 1].get();
      cuda::norm_rows(x_, w.attn_norm, w.attn_norm_bias, h_, c.embedding_length, n, c.norm_epsilon,
                      c.layer_norm, normed_copy, stream_);
      LinearInput normed = made_with(h_, n, normed_copy);
      const cuda::KvWrite kv{rope, device_field(layout().positions), device_field(layout().slots), keys, values};
      project_qkv_and_store_kv(w, normed, kv);
      cuda::attention(attn, q_, keys, values, attention_step, step.attention, partials, attn_, attended_copy,
                      stream_);
      LinearInput attended = made_with(attn_, n, attended_copy);
      linear(w.o, attended, x_, c.embedding_length, w.o_bias, true);
      if (c.parallel_residual) {  // x_q8_ and gemm_x_ now hold the attention output's copies
        normed.quantized = false;
        normed.halved = false;
      } else {
        cuda::norm_rows(x_, w.ffn_norm, nullptr, h_, c.embedding_length, n, c.norm_epsilon,
                        c.layer_norm, normed_copy, stream_);
        normed = made_with(h_, n, normed_copy);
      }
      feed_forward(w, normed);
    }
  }

  // q_, k_, v_ = Q, K, V of the normalized input, without their biases: rope_and_store_kv adds
  // them as it reads the three (on the cuBLAS path each bias was a kernel of its own).
  void project_qkv(const DeviceLayer& w, LinearInput& normed) {
    const ModelConfig& c = config_;
    linear_parts({{w.q, q_, c.q_dim(), nullptr}, {w.k, k_, c.kv_dim(), nullptr}, {w.v, v_, c.kv_dim(), nullptr}},
                 normed, false);
  }

  // q_ = RoPE(Q), and RoPE(K), V into the layer's KV cache at the step's slots (kv). Steps whose
  // three matrices all take the int8 matvec do the rotation and the cache write in its epilogue
  // (PartOutput), without a kernel between the product and the attention; others run
  // rope_and_store_kv over q_, k_ and v_ after the products.
  void project_qkv_and_store_kv(const DeviceLayer& w, LinearInput& normed, const cuda::KvWrite& kv) {
    const ModelConfig& c = config_;
    const int64_t n = normed.tokens;
    if (n <= kMatvecMaxTokens && takes_grouped(w.q, n) && takes_grouped(w.k, n) && takes_grouped(w.v, n)) {
      linear_parts({{w.q, q_, c.q_dim(), w.q_bias, cuda::PartOutput::RopedQuery},
                    {w.k, nullptr, 0, w.k_bias, cuda::PartOutput::RopedKeyToCache},
                    {w.v, nullptr, 0, w.v_bias, cuda::PartOutput::ValueToCache}},
                   normed, false, &kv);
      return;
    }
    project_qkv(w, normed);
    cuda::rope_and_store_kv(kv.rope, {w.q_bias, w.k_bias, w.v_bias}, q_, k_, v_, kv.positions, kv.slots, n,
                            kv.key_cache, kv.value_cache, stream_);
  }

  // x += down(act(h)): SwiGLU (Shazeer 2020) or, for phi-2, GELU of up(h) + bias. `normed` is
  // the normalized input h_.
  void feed_forward(const DeviceLayer& w, LinearInput& normed) {
    const int64_t ffn = config_.feed_forward_length, n = normed.tokens;
    LinearInput activated{up_, n};
    if (config_.gelu_mlp) {
      linear(w.up, normed, up_, ffn, w.up_bias, false);
      cuda::gelu(up_, n * ffn, stream_);
    } else {
      linear_parts({{w.gate, gate_, ffn, nullptr}, {w.up, up_, ffn, w.up_bias}}, normed, false);
      const cuda::InputCopy activated_copy = fused_copy(n, ffn);
      cuda::swiglu(gate_, up_, n * ffn, activated_copy, stream_);
      activated = made_with(up_, n, activated_copy);
    }
    linear(w.down, activated, x_, config_.embedding_length, w.down_bias, true);
  }

  // Logits of wanted rows [begin, begin + count) of the step, their arg max or their sampled
  // tokens, into pinned memory.
  void enqueue_output(int64_t begin, int64_t count, ResultMode mode) {
    const ModelConfig& c = config_;
    cuda::gather_rows(x_, device_field(layout().out_rows) + begin, count, c.embedding_length, out_x_,
                      stream_);
    const cuda::InputCopy normed_copy = fused_copy(count, c.embedding_length);
    cuda::norm_rows(out_x_, output_norm_, output_norm_bias_, out_h_, c.embedding_length, count,
                    c.norm_epsilon, c.layer_norm, normed_copy, stream_);
    LinearInput normed = made_with(out_h_, count, normed_copy);
    linear(output_, normed, logits_, c.vocab_size, output_bias_, false);
    switch (mode) {
      case ResultMode::Logits:
        return check(cudaMemcpyAsync(logits_host_.get(), logits_,
                                     static_cast<size_t>(count * c.vocab_size) * sizeof(float),
                                     cudaMemcpyDeviceToHost, stream_),
                     "logits copy");
      case ResultMode::Greedy:
        cuda::argmax_rows(logits_, count, c.vocab_size, tokens_, stream_);
        return check(cudaMemcpyAsync(tokens_host_.get(), tokens_, static_cast<size_t>(count) * sizeof(int32_t),
                                     cudaMemcpyDeviceToHost, stream_),
                     "token copy");
      case ResultMode::Sampled:
      case ResultMode::SampledLogprobs:
        return sampler_.enqueue(logits_, begin, count, mode == ResultMode::SampledLogprobs, stream_);
    }
    fail("CUDA backend: unknown result mode {}", static_cast<int>(mode));
  }

  ModelConfig config_;
  int64_t cache_slots_;
  StepPacker packer_;
  int64_t multiprocessors_ = cuda::list_devices().empty() ? 1 : cuda::list_devices()[0].multiprocessors;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t upload_done_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  bool use_graphs_ = true;
  cuda::GraphCache graphs_{kMaxGraphs};
  ThreadPool copy_pool_{4};
  cuda::DeviceSampler sampler_{config_.vocab_size, kMaxStepTokens, kMaxOutputRows};

  DeviceMemory weights_memory_;
  DeviceMemory half_weights_;  // keep_half_copies' arena (float16 matrices need none)
  size_t half_weight_bytes_ = 0;
  bool half_copies_ = false;   // every matrix has its float16 copy
  std::array<bool, kMmaMaxTokens + 1> copies_win_{};  // by step size: choose_half_copy_steps
  cuda::DeviceMatrix embedding_, output_;
  const float *output_norm_ = nullptr, *output_norm_bias_ = nullptr, *output_bias_ = nullptr;
  std::vector<DeviceLayer> layers_;
  int64_t max_matrix_cols_ = 0;

  std::vector<DeviceMemory> buffers_;
  float *x_ = nullptr, *h_ = nullptr, *q_ = nullptr, *k_ = nullptr, *v_ = nullptr, *attn_ = nullptr;
  float *gate_ = nullptr, *up_ = nullptr, *out_x_ = nullptr, *out_h_ = nullptr, *logits_ = nullptr;
  float *partial_o_ = nullptr, *partial_ml_ = nullptr;
  int32_t* tokens_ = nullptr;  // greedy picks of the output rows
  void* gemm_weights_ = nullptr;
  void* gemm_x_ = nullptr;
  cuda::ActivationsQ8 x_q8_;
  DeviceMemory cublas_workspace_;
  std::vector<DeviceMemory> cache_;  // per layer: keys, values ([slot][kv_dim] float16)
  DeviceMemory inv_freq_;
  DeviceMemory step_device_;
  PinnedMemory step_host_;
  PinnedMemory logits_host_;
  PinnedMemory tokens_host_;
};

}  // namespace

bool cuda_device_available() { return !cuda::list_devices().empty(); }

double cuda_copy_bandwidth() { return cuda::measure_device_copy_bandwidth(); }

std::unique_ptr<Backend> make_cuda_backend(const ModelConfig& config, const ModelWeights& weights,
                                           const BackendOptions& options) {
  if (!cuda_device_available()) fail("CUDA backend: no CUDA device is present");
  return std::make_unique<CudaBackend>(config, weights, options);
}

}  // namespace realizar
