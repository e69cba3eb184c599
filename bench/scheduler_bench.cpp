// The serving engine's host time per step: the scheduler thread (src/engine/scheduler.cpp)
// planning each step, reserving KV blocks, handing the batch over and streaming every row's
// token as text, with a backend that computes nothing. A GPU step waits for this between two
// launches, so it is a floor under every step of `apr serve` and `apr bench engine`
// (docs/ARCHITECTURE.md, "The scheduler").
//
// Workloads of 32 requests arriving together (--parallel 32): `Decode` (16-token prompts, 256
// tokens each: 32-row decode steps) and `Mixed` (512-token prompts, 128 tokens each, chunked
// prefill at --max-batch-tokens 160, the workload of docs/BENCHMARKS.md's serving runs).
// Counters: us_per_step (the scheduler's wall time per step) and us_per_token (per generated one).
#include <benchmark/benchmark.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <vector>

#include "engine/scheduler.h"
#include "kv/kv_manager.h"
#include "realizar/backend.h"
#include "realizar/engine.h"
#include "realizar/tokenizer.h"

namespace realizar {
namespace {

const Tokenizer& qwen2_tokenizer() {
  static const Tokenizer tokenizer(load_hf_tokenizer(
      std::filesystem::path(REALIZAR_SOURCE_DIR) / "tests/data/tokenizers/qwen2/tokenizer.json", std::nullopt));
  return tokenizer;
}

// Answers every row with one ordinary token (a word piece, not end-of-generation) at once.
class NullBackend : public Backend {
 public:
  NullBackend(int64_t vocab, int64_t slots) : slots_(slots) {
    config_.vocab_size = vocab;
    config_.block_count = 28;
    config_.head_count = config_.head_count_kv = 4;
    config_.head_dim = 128;
  }
  std::string_view name() const override { return "null"; }
  const ModelConfig& config() const override { return config_; }
  int64_t cache_slots() const override { return slots_; }
  int64_t kv_bytes_per_token() const override { return kv_cache_bytes_per_token(config_, 2); }
  void copy_blocks(std::span<const BlockCopy>) override {}
  void forward(const Batch&, const KvStep&, std::vector<float>&) override {}
  void sample(const Batch&, const KvStep&, std::span<const RowSampling> rows,
              std::vector<SampledToken>& out) override {
    out.resize(rows.size());
    for (size_t i = 0; i < rows.size(); ++i) out[i].token = static_cast<int32_t>(1000 + rows[i].position % 500);
  }

 private:
  ModelConfig config_;
  int64_t slots_;
};

void run_workload(benchmark::State& state, int64_t prompt_tokens, int max_tokens, int64_t max_batch_tokens) {
  constexpr int kRequests = 32;
  constexpr int64_t kBlocks = 4096;  // 65,536 slots: every request fits, no preemption
  const Tokenizer& tokenizer = qwen2_tokenizer();
  std::vector<int32_t> prompt(static_cast<size_t>(prompt_tokens));
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int32_t>(2000 + i % 3000);
  int64_t steps = 0, tokens = 0;
  double seconds = 0;
  for (auto _ : state) {
    SchedulerLimits limits;
    limits.context_length = prompt_tokens + max_tokens;
    limits.max_sequences = kRequests;
    limits.max_batch_tokens = max_batch_tokens;
    auto backend = std::make_unique<NullBackend>(static_cast<int64_t>(tokenizer.vocab_size()), kBlocks * kKvBlockSize);
    Scheduler scheduler(std::move(backend), KvManager(kBlocks), tokenizer, limits);
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::shared_ptr<RequestChannel>> channels;
    for (uint64_t id = 1; id <= kRequests; ++id) {
      Request request{prompt, {}};
      request.options.max_tokens = max_tokens;
      request.options.ignore_eos = true;
      channels.push_back(std::make_shared<RequestChannel>());
      scheduler.submit(id, std::move(request), channels.back());
    }
    for (auto& channel : channels) {
      while (std::optional<RequestEvent> event = channel->pop(std::chrono::seconds(60))) {
        if (event->finish != FinishReason::None) break;
      }
    }
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const EngineMetrics metrics = scheduler.metrics();
    steps += metrics.steps;
    tokens += metrics.generation_tokens;
  }
  state.counters["us_per_step"] = 1e6 * seconds / static_cast<double>(steps);
  state.counters["us_per_token"] = 1e6 * seconds / static_cast<double>(tokens);
  state.counters["steps"] = static_cast<double>(steps) / static_cast<double>(state.iterations());
}

void Decode(benchmark::State& state) { run_workload(state, 16, 256, 512); }
void Mixed(benchmark::State& state) { run_workload(state, 512, 128, 160); }

BENCHMARK(Decode)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(Mixed)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace realizar
