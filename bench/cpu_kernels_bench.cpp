// CPU backend speed: each kernel of every kernel set this CPU runs, on one thread at the real
// shapes of Qwen2.5-0.5B/1.5B/7B and SmolLM2-135M, reported as GB/s of weights (decode reads
// every weight once per token) and GFLOP/s (2 flops per multiply-add); then end-to-end prefill
// and decode tokens per second of a model.
//
// The end-to-end model is REALIZAR_BENCH_MODEL (a GGUF path) when set, else a qwen2.5-1.5b-shaped
// Q4_K_M model built in memory (llama.cpp's Q4_K_M type choice). Threads: REALIZAR_BENCH_THREADS
// (default 2). Times are CPU time of the measuring thread for the kernels (the machine may be
// shared) and wall time for the model, which also reports tokens per CPU-second of the process.
//   build/cpu_kernels_bench --benchmark_filter=Gemm/Q4_K
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
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_features.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/packed_weights.h"
#include "engine/batch_runner.h"
#include "realizar/gguf.h"
#include "realizar/model.h"
#include "realizar/quant.h"
#include "util/thread_pool.h"

namespace realizar {
namespace {

using cpu::Isa;

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

std::vector<float> normal_floats(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

bool skip_unsupported(benchmark::State& state, Isa isa) {
  if (cpu::isa_supported(isa, cpu::cpu_features())) return false;
  state.SkipWithError("this CPU cannot run these kernels");
  return true;
}

// One matmul on one thread: quantize `tokens` input rows, then every packed group against them,
// as the backend runs a stage (decode: tokens = 1; prefill: the backend's 64-token passes).
void BM_Gemm(benchmark::State& state, TensorType type, Isa isa) {
  if (skip_unsupported(state, isa)) return;
  const int64_t rows = state.range(0), cols = state.range(1), tokens = state.range(2);
  const cpu::KernelSet& kernels = cpu::kernel_set(isa);
  const auto matrix = random_matrix(type, rows, cols);
  ThreadPool pool(1);
  const cpu::PackedMatrix packed(matrix->tensor, pool);
  const cpu::ActivationFormat format = cpu::activation_format(type);
  const size_t stride = cpu::activation_row_bytes(format, cols);
  const std::vector<float> x = normal_floats(tokens * cols, 1);
  std::vector<uint8_t> act(stride * static_cast<size_t>(tokens));
  std::vector<float> out(static_cast<size_t>(tokens * cpu::kGroupRows));
  const cpu::GemmKernel gemm = kernels.gemm_for(type);
  for (auto _ : state) {
    for (int64_t t = 0; t < tokens; ++t) {
      uint8_t* row = act.data() + static_cast<size_t>(t) * stride;
      if (format == cpu::ActivationFormat::Q8K) {
        kernels.quantize_k(x.data() + t * cols, reinterpret_cast<cpu::ActBlockK*>(row), cols);
      } else {
        kernels.quantize_32(x.data() + t * cols, reinterpret_cast<cpu::ActBlock32*>(row), cols);
      }
    }
    for (int64_t g = 0; g < packed.groups(); ++g) {
      gemm(packed.group(g), act.data(), stride, tokens, packed.blocks(), out.data());
      benchmark::DoNotOptimize(out.data());
    }
  }
  const double iterations = static_cast<double>(state.iterations());
  state.counters["weight_GB/s"] = benchmark::Counter(iterations * static_cast<double>(packed.bytes()) / 1e9, benchmark::Counter::kIsRate);
  state.counters["GFLOP/s"] = benchmark::Counter(iterations * 2.0 * static_cast<double>(rows * cols * tokens) / 1e9, benchmark::Counter::kIsRate);
  state.SetLabel(std::string(cpu::isa_name(isa)));
}

// {rows, cols} of a model's matrices, each with 1 and 64 tokens.
void shapes(benchmark::internal::Benchmark* b, std::initializer_list<std::pair<int64_t, int64_t>> matrices) {
  for (auto [rows, cols] : matrices) {
    for (int64_t tokens : {1, 64}) b->Args({rows, cols, tokens});
  }
  b->ArgNames({"rows", "cols", "tokens"});
}

// Qwen2.5-1.5B (1536 / 8960) and -7B (3584 / 18944): q/o, gate/up, down (Q4_K, Q6_K files).
void k_shapes(benchmark::internal::Benchmark* b) {
  shapes(b, {{1536, 1536}, {8960, 1536}, {1536, 8960}, {3584, 3584}, {18944, 3584}, {3584, 18944}});
}
// Qwen2.5-0.5B (896 / 4864; Q5_0, Q8_0) and SmolLM2-135M (576 / 1536; Q4_1, Q8_0 output), and one
// matrix larger than the last-level cache (decode streams every matrix from memory: a model does
// not fit in the cache).
void small_shapes(benchmark::internal::Benchmark* b) {
  shapes(b, {{896, 896}, {4864, 896}, {576, 576}, {1536, 576}, {576, 1536}, {18944, 3584}});
}

#define REALIZAR_GEMM_BENCH(TYPE, SHAPES)                                                          \
  BENCHMARK_CAPTURE(BM_Gemm, TYPE/amx, TensorType::TYPE, Isa::Amx)->Apply(SHAPES);                 \
  BENCHMARK_CAPTURE(BM_Gemm, TYPE/avx512, TensorType::TYPE, Isa::Avx512)->Apply(SHAPES);           \
  BENCHMARK_CAPTURE(BM_Gemm, TYPE/avx2, TensorType::TYPE, Isa::Avx2)->Apply(SHAPES);               \
  BENCHMARK_CAPTURE(BM_Gemm, TYPE/scalar, TensorType::TYPE, Isa::Scalar)->Apply(SHAPES)

REALIZAR_GEMM_BENCH(Q4_K, k_shapes);
REALIZAR_GEMM_BENCH(Q5_K, k_shapes);
REALIZAR_GEMM_BENCH(Q6_K, k_shapes);
REALIZAR_GEMM_BENCH(Q8_0, small_shapes);
REALIZAR_GEMM_BENCH(Q5_0, small_shapes);
REALIZAR_GEMM_BENCH(Q4_0, small_shapes);
REALIZAR_GEMM_BENCH(Q4_1, small_shapes);
REALIZAR_GEMM_BENCH(Q5_1, small_shapes);

// Decode attention of one token over `length` cached positions: one KV head's group of query heads
// (Qwen2.5-1.5B: 6 query heads per KV head, head_dim 128). GB/s of the float16 cache rows read.
void BM_Attention(benchmark::State& state, Isa isa) {
  if (skip_unsupported(state, isa)) return;
  const int64_t length = state.range(0), queries = state.range(1), head_dim = 128;
  const cpu::KernelSet& kernels = cpu::kernel_set(isa);
  const int64_t blocks = (length + 15) / 16;
  std::vector<int32_t> table(static_cast<size_t>(blocks));
  for (int64_t i = 0; i < blocks; ++i) table[static_cast<size_t>(i)] = static_cast<int32_t>((i * 7) % blocks);
  std::vector<ggml_half> keys(static_cast<size_t>(blocks * 16 * head_dim)), values(keys.size());
  const std::vector<float> kv = normal_floats(static_cast<int64_t>(keys.size()), 2);
  for (size_t i = 0; i < keys.size(); ++i) keys[i] = values[i] = fp32_to_fp16(kv[i]);
  const std::vector<float> q = normal_floats(queries * head_dim, 3);
  std::vector<float> out(q.size());
  std::vector<const float*> q_ptr;
  std::vector<float*> out_ptr;
  for (int64_t i = 0; i < queries; ++i) {
    q_ptr.push_back(q.data() + i * head_dim);
    out_ptr.push_back(out.data() + i * head_dim);
  }
  const std::vector<int64_t> lengths(static_cast<size_t>(queries), length);
  std::vector<float> scratch(static_cast<size_t>(cpu::attention_scratch_floats(queries, head_dim, length)));
  for (auto _ : state) {
    kernels.attention({q_ptr.data(), out_ptr.data(), lengths.data(), queries, table.data(), keys.data(), 16 * head_dim,
                       values.data(), head_dim, head_dim, 0.088f, scratch.data()});
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["cache_GB/s"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * 2.0 * static_cast<double>(length * head_dim) * 2.0 / 1e9, benchmark::Counter::kIsRate);
  state.SetLabel(std::string(cpu::isa_name(isa)));
}

void attention_shapes(benchmark::internal::Benchmark* b) {
  for (int64_t length : {256, 4096}) b->Args({length, 6});
  b->ArgNames({"length", "queries"});
}

BENCHMARK_CAPTURE(BM_Attention, avx512, Isa::Avx512)->Apply(attention_shapes);
BENCHMARK_CAPTURE(BM_Attention, avx2, Isa::Avx2)->Apply(attention_shapes);
BENCHMARK_CAPTURE(BM_Attention, scalar, Isa::Scalar)->Apply(attention_shapes);

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
  state.SetLabel(m.backend->detail());
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
  state.SetLabel(m.backend->detail());
}

BENCHMARK(BM_ModelPrefill)->Arg(64)->Unit(benchmark::kMillisecond)->MinTime(3.0)->UseRealTime();
BENCHMARK(BM_ModelDecode)->Unit(benchmark::kMillisecond)->MinTime(3.0)->UseRealTime();

}  // namespace
}  // namespace realizar
