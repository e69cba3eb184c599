// CPU backend speed: the dot kernels over whole weight matrices of real shapes (one thread,
// bytes/s of weights), and end-to-end prefill / decode tokens per second of a model.
//
// The end-to-end model is REALIZAR_BENCH_MODEL (a GGUF path) when set, else a qwen2.5-1.5b-shaped
// Q4_K_M model built in memory (llama.cpp's Q4_K_M type choice: Q6_K embedding and, in half of
// the layers, attn_v / ffn_down; Q4_K elsewhere). Threads: REALIZAR_BENCH_THREADS (default 2).
//   build/cpu_kernels_bench --benchmark_filter=Model
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <optional>
#include <random>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/kernels.h"
#include "engine/batch_runner.h"
#include "realizar/gguf.h"
#include "realizar/model.h"
#include "realizar/quant.h"

namespace realizar {
namespace {

// Rows of a `type` matrix: 16 distinct quantized random rows repeated (real data, fast to make).
struct Matrix {
  std::vector<uint8_t> bytes;
  WeightTensor tensor;
};

std::unique_ptr<Matrix> random_matrix(TensorType type, int64_t rows, int64_t cols) {
  auto m = std::make_unique<Matrix>();
  const size_t row_size = row_bytes(type, static_cast<uint64_t>(cols));
  constexpr int64_t kDistinct = 16;
  std::vector<uint8_t> distinct(row_size * kDistinct);
  std::mt19937 rng(static_cast<uint32_t>(rows * 31 + cols));
  std::normal_distribution<float> dist(0.0f, 1.0f / std::sqrt(static_cast<float>(cols)));
  std::vector<float> values(static_cast<size_t>(cols));
  for (int64_t r = 0; r < kDistinct; ++r) {
    for (float& v : values) v = dist(rng);
    quantize_row(type, values.data(), distinct.data() + static_cast<size_t>(r) * row_size, cols);
  }
  m->bytes.resize(row_size * static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    std::memcpy(m->bytes.data() + static_cast<size_t>(r) * row_size,
                distinct.data() + static_cast<size_t>(r % kDistinct) * row_size, row_size);
  }
  m->tensor = WeightTensor{type, cols, rows, m->bytes.data(), row_size};
  return m;
}

// One matrix-vector product (quantize the input, one dot per row) on one thread.
void BM_Matvec(benchmark::State& state, TensorType type) {
  const int64_t rows = state.range(0), cols = state.range(1);
  const auto matrix = random_matrix(type, rows, cols);
  const TensorType act_type = cpu::activation_type(type);
  std::vector<float> x(static_cast<size_t>(cols), 0.5f);
  std::vector<uint8_t> act(row_bytes(act_type, static_cast<uint64_t>(cols)));
  std::vector<float> y(static_cast<size_t>(rows));
  const cpu::DotKernel kernel = cpu::dot_kernel(type);
  for (auto _ : state) {
    cpu::quantize_activation_row(act_type, x.data(), act.data(), cols);
    for (int64_t r = 0; r < rows; ++r) y[static_cast<size_t>(r)] = kernel(matrix->tensor.row(r), act.data(), cols);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(matrix->bytes.size()));
  state.SetLabel(cpu::kernel_isa());
}

void real_shapes(benchmark::internal::Benchmark* b) {
  // Qwen2.5-0.5B (896 / 4864), -1.5B (1536 / 8960), -7B (3584 / 18944): q/o, up/gate, down.
  for (auto [rows, cols] : std::vector<std::pair<int64_t, int64_t>>{
           {1536, 1536}, {8960, 1536}, {1536, 8960}, {3584, 3584}, {18944, 3584}, {3584, 18944}}) {
    b->Args({rows, cols});
  }
}

void small_block_shapes(benchmark::internal::Benchmark* b) {
  for (auto [rows, cols] : std::vector<std::pair<int64_t, int64_t>>{
           {896, 896}, {4864, 896}, {896, 4864}, {1536, 1536}, {8960, 1536}}) {
    b->Args({rows, cols});
  }
}

BENCHMARK_CAPTURE(BM_Matvec, Q4_K, TensorType::Q4_K)->Apply(real_shapes);
BENCHMARK_CAPTURE(BM_Matvec, Q5_K, TensorType::Q5_K)->Apply(real_shapes);
BENCHMARK_CAPTURE(BM_Matvec, Q6_K, TensorType::Q6_K)->Apply(real_shapes);
BENCHMARK_CAPTURE(BM_Matvec, Q8_0, TensorType::Q8_0)->Apply(small_block_shapes);
BENCHMARK_CAPTURE(BM_Matvec, Q5_0, TensorType::Q5_0)->Apply(small_block_shapes);
BENCHMARK_CAPTURE(BM_Matvec, Q4_0, TensorType::Q4_0)->Apply(small_block_shapes);
BENCHMARK_CAPTURE(BM_Matvec, F16, TensorType::F16)->Apply(small_block_shapes);
BENCHMARK_CAPTURE(BM_Matvec, BF16, TensorType::BF16)->Apply(small_block_shapes);

// ---- end to end ----------------------------------------------------------------------------------

struct BenchModel {
  std::optional<gguf::File> file;
  std::deque<std::unique_ptr<Matrix>> matrices;
  ModelConfig config;
  ModelWeights weights;
  std::unique_ptr<Backend> backend;
  std::unique_ptr<BatchRunner> runner;

  WeightTensor matrix(TensorType type, int64_t rows, int64_t cols) {
    return matrices.emplace_back(random_matrix(type, rows, cols))->tensor;
  }
  WeightTensor ones(int64_t n) {
    auto m = std::make_unique<Matrix>();
    m->bytes.resize(static_cast<size_t>(n) * sizeof(float));
    const float one = 1.0f;
    for (int64_t i = 0; i < n; ++i) std::memcpy(m->bytes.data() + i * 4, &one, 4);
    m->tensor = WeightTensor{TensorType::F32, n, 1, m->bytes.data(), static_cast<size_t>(n) * 4};
    return matrices.emplace_back(std::move(m))->tensor;
  }
};

// Qwen2.5-1.5B: 28 layers, hidden 1536, ffn 8960, 12 heads / 2 KV heads of 128, vocab 151936.
void synthesize_qwen2_1_5b_q4_k_m(BenchModel& m) {
  ModelConfig& c = m.config;
  c.architecture = Architecture::Qwen2;
  c.architecture_name = "qwen2";
  c.vocab_size = 151936;
  c.context_length = 32768;
  c.embedding_length = 1536;
  c.block_count = 28;
  c.feed_forward_length = 8960;
  c.head_count = 12;
  c.head_count_kv = 2;
  c.head_dim = 128;
  c.rope_dim = 128;
  c.norm_epsilon = 1e-6f;
  c.rope_freq_base = 1000000.0f;
  c.rope_style = RopeStyle::NeoX;
  const int64_t h = c.embedding_length, kv = c.kv_dim(), ffn = c.feed_forward_length;
  m.weights.token_embd = m.matrix(TensorType::Q6_K, c.vocab_size, h);
  for (int64_t l = 0; l < c.block_count; ++l) {
    const int64_t n = c.block_count;
    const bool more_bits = l < n / 8 || l >= 7 * n / 8 || (l - n / 8) % 3 == 2;  // llama.cpp
    const TensorType wide = more_bits ? TensorType::Q6_K : TensorType::Q4_K;
    LayerWeights& w = m.weights.layers.emplace_back();
    w.attn_norm = m.ones(h);
    w.ffn_norm = m.ones(h);
    w.attn_q = m.matrix(TensorType::Q4_K, h, h);
    w.attn_k = m.matrix(TensorType::Q4_K, kv, h);
    w.attn_v = m.matrix(wide, kv, h);
    w.attn_q_bias = m.ones(h);
    w.attn_k_bias = m.ones(kv);
    w.attn_v_bias = m.ones(kv);
    w.attn_output = m.matrix(TensorType::Q4_K, h, h);
    w.ffn_gate = m.matrix(TensorType::Q4_K, ffn, h);
    w.ffn_up = m.matrix(TensorType::Q4_K, ffn, h);
    w.ffn_down = m.matrix(wide, h, ffn);
  }
  m.weights.output_norm = m.ones(h);
  m.weights.output = m.weights.token_embd;
}

// CPU seconds of all threads of the process so far: on a loaded machine, tokens per CPU-second
// shows what the code costs independently of how much of the cores it got.
double process_cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const auto seconds = [](const timeval& t) { return static_cast<double>(t.tv_sec) + 1e-6 * static_cast<double>(t.tv_usec); };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

int bench_threads() {
  const char* env = std::getenv("REALIZAR_BENCH_THREADS");
  return env ? std::atoi(env) : 2;
}

BenchModel& bench_model() {
  static BenchModel* model = [] {
    auto* m = new BenchModel;
    if (const char* path = std::getenv("REALIZAR_BENCH_MODEL")) {
      m->file.emplace(gguf::File::open(path));
      m->config = ModelConfig::from_gguf(*m->file);
      m->weights = ModelWeights::from_gguf(*m->file, m->config);
    } else {
      synthesize_qwen2_1_5b_q4_k_m(*m);
    }
    BackendOptions options;
    options.cache_slots = 1024;
    options.max_sequence_length = 1024;
    options.threads = bench_threads();
    m->backend = make_cpu_backend(m->config, m->weights, options);
    m->runner = std::make_unique<BatchRunner>(*m->backend);
    return m;
  }();
  return *model;
}

// Prompt processing: one forward of `n` tokens, logits for the last (llama-bench pp<n>).
void BM_ModelPrefill(benchmark::State& state) {
  BenchModel& m = bench_model();
  const int64_t n = state.range(0);
  Batch batch;
  for (int64_t i = 0; i < n; ++i) batch.add(static_cast<int32_t>(i * 7 % 1000), static_cast<int32_t>(i), 0, i == n - 1);
  std::vector<float> logits;
  const double cpu_start = process_cpu_seconds();
  for (auto _ : state) {
    m.runner->release(0);
    m.runner->forward(batch, logits);
  }
  state.counters["tok/cpu_s"] = static_cast<double>(n * state.iterations()) / (process_cpu_seconds() - cpu_start);
  state.counters["tok/s"] = benchmark::Counter(static_cast<double>(n), benchmark::Counter::kIsIterationInvariantRate);
}

// Token generation: one token per forward after a 32-token prompt (llama-bench tg).
void BM_ModelDecode(benchmark::State& state) {
  BenchModel& m = bench_model();
  Batch batch;
  std::vector<float> logits;
  int32_t position = 1024;  // forces a restart on the first iteration
  double cpu_total = 0.0;
  for (auto _ : state) {
    if (position >= 512) {
      state.PauseTiming();
      m.runner->release(0);
      batch.clear();
      for (int32_t i = 0; i < 32; ++i) batch.add(i + 100, i, 0, i == 31);
      m.runner->forward(batch, logits);
      position = 32;
      state.ResumeTiming();
    }
    batch.clear();
    batch.add(position % 1000, position, 0, true);
    const double cpu_start = process_cpu_seconds();
    m.runner->forward(batch, logits);
    cpu_total += process_cpu_seconds() - cpu_start;
    ++position;
  }
  state.counters["tok/cpu_s"] = static_cast<double>(state.iterations()) / cpu_total;
  state.counters["tok/s"] = benchmark::Counter(1.0, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["weight_GB/s"] = benchmark::Counter(
      static_cast<double>(weight_bytes_per_token(m.weights)) / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}

BENCHMARK(BM_ModelPrefill)->Arg(64)->Unit(benchmark::kMillisecond)->MinTime(3.0)->UseRealTime();
BENCHMARK(BM_ModelDecode)->Unit(benchmark::kMillisecond)->MinTime(3.0)->UseRealTime();

}  // namespace
}  // namespace realizar
