#include "bench/bench.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <thread>

#include "engine/batch_runner.h"
#include "realizar/error.h"

namespace realizar::bench {
namespace {

using Clock = std::chrono::steady_clock;

double elapsed(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::vector<int32_t> random_tokens(int64_t count, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> tokens(static_cast<size_t>(count));
  for (int32_t& t : tokens) t = static_cast<int32_t>(rng() % static_cast<uint64_t>(vocab));
  return tokens;
}

void release_all(BatchRunner& runner, int sequences) {
  for (int s = 0; s < sequences; ++s) runner.release(s);
}

// Prefill of `tokens` into sequence `seq` as one batch. Every step ends with the greedy pick of
// the next token on the backend, as `apr run --temp 0` does (a GPU hands back token ids, not
// logits).
void prefill(BatchRunner& runner, int32_t seq, const std::vector<int32_t>& tokens,
             std::vector<int32_t>& picked) {
  Batch batch;
  for (size_t i = 0; i < tokens.size(); ++i) {
    batch.add(tokens[i], static_cast<int32_t>(i), seq, i + 1 == tokens.size());
  }
  runner.greedy(batch, picked);
}

// `steps` decode steps, each one token for every sequence in [0, sequences), continuing from
// `start` (the sequences' current length).
void decode(BatchRunner& runner, int sequences, int64_t start, int64_t steps,
            const std::vector<int32_t>& tokens, std::vector<int32_t>& picked) {
  Batch batch;
  for (int64_t step = 0; step < steps; ++step) {
    batch.clear();
    for (int s = 0; s < sequences; ++s) {
      batch.add(tokens[static_cast<size_t>(step) % tokens.size()],
                static_cast<int32_t>(start + step), s, true);
    }
    runner.greedy(batch, picked);
  }
}

}  // namespace

double Measurement::mean_tokens_per_second() const {
  double sum = 0;
  for (double s : seconds) sum += static_cast<double>(tokens) / s;
  return sum / static_cast<double>(seconds.size());
}

double Measurement::stdev_tokens_per_second() const {
  if (seconds.size() < 2) return 0.0;
  const double mean = mean_tokens_per_second();
  double sum = 0;
  for (double s : seconds) {
    const double d = static_cast<double>(tokens) / s - mean;
    sum += d * d;
  }
  return std::sqrt(sum / static_cast<double>(seconds.size() - 1));
}

std::vector<Measurement> run_benchmark(Backend& backend, const BenchOptions& o) {
  BatchRunner runner(backend);
  if (o.repetitions < 1 || o.parallel < 1 || o.prompt_tokens < 0 || o.generate_tokens < 0) {
    fail("bench: repetitions and --parallel must be at least 1, token counts not negative");
  }
  const int64_t vocab = backend.config().vocab_size;
  const std::vector<int32_t> tokens =
      random_tokens(std::max<int64_t>({o.prompt_tokens, o.generate_tokens, 1}), vocab, 1234);
  const std::vector<int32_t> prompt(tokens.begin(), tokens.begin() + o.prompt_tokens);
  std::vector<int32_t> picked;
  std::vector<Measurement> results;

  // Warm-up: the whole prompt once (so that a library's first use of the prompt's shapes, such as
  // cuBLAS picking its kernels, falls outside the timing) and a few decode steps (page in
  // weights, build graphs, caches).
  const std::vector<int32_t> warm_prompt(tokens.begin(),
                                         tokens.begin() + std::max<int64_t>(o.prompt_tokens, 1));
  prefill(runner, 0, warm_prompt, picked);
  decode(runner, 1, static_cast<int64_t>(warm_prompt.size()), 4, tokens, picked);
  release_all(runner, 1);

  if (o.prompt_tokens > 0) {
    Measurement m{"pp" + std::to_string(o.prompt_tokens), o.prompt_tokens, {}};
    for (int r = 0; r < o.repetitions; ++r) {
      const auto start = Clock::now();
      prefill(runner, 0, prompt, picked);
      m.seconds.push_back(elapsed(start));
      release_all(runner, 1);
    }
    results.push_back(m);
  }
  if (o.generate_tokens > 0 && o.parallel == 1) {
    Measurement m{"tg" + std::to_string(o.generate_tokens), o.generate_tokens, {}};
    for (int r = 0; r < o.repetitions; ++r) {
      const auto start = Clock::now();
      decode(runner, 1, 0, o.generate_tokens, tokens, picked);
      m.seconds.push_back(elapsed(start));
      release_all(runner, 1);
    }
    results.push_back(m);
  }
  if (o.generate_tokens > 0 && o.parallel > 1) {
    // Serving throughput (llama-batched-bench): each sequence gets its own prompt first; the
    // aggregate decode rate counts every sequence's tokens.
    Measurement m{"tg" + std::to_string(o.generate_tokens) + " x" + std::to_string(o.parallel),
                  o.generate_tokens * o.parallel, {}};
    for (int r = 0; r < o.repetitions; ++r) {
      for (int s = 0; s < o.parallel; ++s) prefill(runner, s, prompt, picked);
      const auto start = Clock::now();
      decode(runner, o.parallel, o.prompt_tokens, o.generate_tokens, tokens, picked);
      m.seconds.push_back(elapsed(start));
      release_all(runner, o.parallel);
    }
    results.push_back(m);
  }
  return results;
}

double measure_host_copy_bandwidth(int threads) {
  constexpr size_t kBytes = size_t{1} << 30;  // 1 GiB each way: far beyond any CPU cache
  threads = std::max(threads, 1);
  std::vector<char> src(kBytes, 1), dst(kBytes, 0);
  double best = 0.0;
  for (int run = 0; run < 5; ++run) {
    const auto start = Clock::now();
    std::vector<std::thread> workers;
    const size_t chunk = kBytes / static_cast<size_t>(threads);
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        std::memcpy(dst.data() + t * chunk, src.data() + t * chunk, chunk);
      });
    }
    for (auto& w : workers) w.join();
    best = std::max(best, 2.0 * static_cast<double>(kBytes) / elapsed(start));
  }
  return best;
}

}  // namespace realizar::bench
