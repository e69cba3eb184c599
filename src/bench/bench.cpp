#include "bench/bench.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <random>
#include <thread>

#include "engine/batch_runner.h"
#include "realizar/error.h"
#include "util/progress.h"

namespace realizar::bench {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int64_t kContextChunk = 512;  // untimed context is prefilled in batches of this size
constexpr uint64_t kTokenSeed = 1234;

double elapsed(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::vector<int32_t> random_tokens(int64_t count, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> tokens(static_cast<size_t>(count));
  for (int32_t& t : tokens) t = static_cast<int32_t>(rng() % static_cast<uint64_t>(vocab));
  return tokens;
}

// ---- the code that drives a backend: prefill() and decode_step() ----------------------------------

// Runs the batch and picks each wanted row's next token on the backend (a GPU hands back token
// ids, not logits): greedily as `apr run --temp 0` does, or with the sampling parameters as a
// request would (no penalty history: the fed tokens are not what was picked).
class Picker {
 public:
  explicit Picker(const SamplingParams& params) : params_(params) {}

  void pick(BatchRunner& runner, const Batch& batch) {
    if (params_.is_plain_greedy()) return runner.greedy(batch, picked_);
    rows_.clear();
    for (size_t i = 0; i < batch.size(); ++i) {
      if (!batch.want_logits[i]) continue;
      RowSampling& row = rows_.emplace_back();
      row.params = params_;
      row.position = batch.positions[i] + 1;
    }
    runner.sample(batch, rows_, sampled_);
    for (const SampledToken& t : sampled_) {
      if (!t.error.empty()) fail("bench: {}", t.error);
    }
  }

 private:
  SamplingParams params_;
  std::vector<int32_t> picked_;
  std::vector<RowSampling> rows_;
  std::vector<SampledToken> sampled_;
};

// Runs tokens[begin, end) of sequence `seq` as one batch, continuing its cache at `begin`.
void prefill(BatchRunner& runner, Picker& picker, int32_t seq, const std::vector<int32_t>& tokens,
             int64_t begin, int64_t end) {
  Batch batch;
  for (int64_t i = begin; i < end; ++i) {
    batch.add(tokens[static_cast<size_t>(i)], static_cast<int32_t>(i), seq, i + 1 == end);
  }
  picker.pick(runner, batch);
}

// One decode step: one token for every sequence in [0, sequences) at position `position`.
void decode_step(BatchRunner& runner, Picker& picker, int sequences, int64_t position, int32_t token) {
  Batch batch;
  for (int s = 0; s < sequences; ++s) batch.add(token, static_cast<int32_t>(position), s, true);
  picker.pick(runner, batch);
}

void release_all(BatchRunner& runner, int sequences) {
  for (int s = 0; s < sequences; ++s) runner.release(s);
}

// ---- one run of a test ---------------------------------------------------------------------------

struct RunTimes {
  double seconds = 0;
  double prefill_seconds = 0;
  std::vector<double> steps;
};

RunTimes run_once(BatchRunner& runner, Picker& picker, const TestSpec& test, const std::vector<int32_t>& tokens) {
  const int64_t context = test.context_before();
  for (int s = 0; s < test.parallel; ++s) {
    for (int64_t begin = 0; begin < context; begin += kContextChunk) {
      prefill(runner, picker, s, tokens, begin, std::min(begin + kContextChunk, context));
    }
  }
  RunTimes times;
  const auto start = Clock::now();
  if (test.n_prompt > 0) {
    prefill(runner, picker, 0, tokens, context, context + test.n_prompt);
    times.prefill_seconds = elapsed(start);
  }
  int64_t position = context + test.n_prompt;
  for (int64_t step = 0; step < test.n_gen; ++step, ++position) {
    const auto step_start = Clock::now();
    decode_step(runner, picker, test.parallel, position, tokens[static_cast<size_t>(position)]);
    times.steps.push_back(elapsed(step_start));
  }
  times.seconds = elapsed(start);
  release_all(runner, test.parallel);
  return times;
}

Measurement measure(BatchRunner& runner, Picker& picker, const TestSpec& test, const RepetitionPolicy& policy,
                    const std::vector<int32_t>& tokens) {
  Measurement m{test, {}, {}, {}, policy.warmup};
  const int most = policy.cv_target > 0 ? std::max(policy.max_repetitions, policy.repetitions)
                                        : policy.repetitions;
  Progress progress("bench " + test.name(), static_cast<uint64_t>(policy.warmup + most),
                    Progress::Unit::Items);
  for (int w = 0; w < policy.warmup; ++w) {
    run_once(runner, picker, test, tokens);
    progress.advance(1);
  }
  std::vector<double> rates;
  while (wants_another_run(rates, policy)) {
    RunTimes t = run_once(runner, picker, test, tokens);
    m.seconds.push_back(t.seconds);
    if (test.n_prompt > 0) m.prefill_seconds.push_back(t.prefill_seconds);
    m.step_seconds.insert(m.step_seconds.end(), t.steps.begin(), t.steps.end());
    rates.push_back(static_cast<double>(test.tokens()) / t.seconds);
    progress.advance(1);
  }
  return m;
}

void check_lengths(const std::vector<int64_t>& values, const char* flag) {
  for (int64_t v : values) {
    if (v < 0) fail("bench: {} wants token counts of at least 0, got {}", flag, v);
  }
}

}  // namespace

std::string TestSpec::name() const {
  std::string s;
  if (n_prompt > 0) s = "pp" + std::to_string(n_prompt);
  if (n_gen > 0) s += (s.empty() ? "tg" : "+tg") + std::to_string(n_gen);
  if (parallel > 1) s += " x" + std::to_string(parallel);
  if (n_depth > 0) s += " @ d" + std::to_string(n_depth);
  return s;
}

std::vector<TestSpec> plan_tests(const BenchOptions& o) {
  check_lengths(o.prompt_tokens, "-p");
  check_lengths(o.generate_tokens, "-n");
  check_lengths(o.depths, "-d");
  for (const auto& [p, n] : o.prompt_generate) {
    if (p < 1 || n < 1) fail("bench: -pg wants two token counts of at least 1, got {},{}", p, n);
  }
  for (int s : o.parallel) {
    if (s < 1) fail("bench: --parallel wants sequence counts of at least 1, got {}", s);
  }
  const auto first_prompt = std::find_if(o.prompt_tokens.begin(), o.prompt_tokens.end(),
                                         [](int64_t p) { return p > 0; });
  const int64_t batched_prompt = first_prompt == o.prompt_tokens.end() ? 0 : *first_prompt;
  std::vector<TestSpec> tests;
  for (int64_t d : o.depths) {
    for (int64_t p : o.prompt_tokens) {
      if (p > 0) tests.push_back({.n_prompt = p, .n_depth = d});
    }
    for (int64_t n : o.generate_tokens) {
      if (n == 0) continue;
      for (int s : o.parallel) {
        tests.push_back({.n_gen = n, .n_depth = d, .parallel = s,
                         .sequence_prompt = s > 1 && d == 0 ? batched_prompt : 0});
      }
    }
    for (const auto& [p, n] : o.prompt_generate) {
      tests.push_back({.n_prompt = p, .n_gen = n, .n_depth = d});
    }
  }
  if (tests.empty()) fail("bench: nothing to measure (every -p and -n is 0 and no -pg)");
  return tests;
}

BackendOptions backend_options(const std::vector<TestSpec>& tests, int threads) {
  BackendOptions options;
  options.threads = threads;
  for (const TestSpec& t : tests) {
    const int64_t per_sequence = (t.context_before() + t.n_prompt + t.n_gen + 8 + 63) / 64 * 64;
    options.cache_slots = std::max(options.cache_slots, per_sequence * t.parallel);
    options.max_sequence_length = std::max(options.max_sequence_length, per_sequence);
  }
  return options;
}

std::vector<double> Measurement::tokens_per_second() const {
  std::vector<double> rates;
  for (double s : seconds) rates.push_back(static_cast<double>(test.tokens()) / s);
  return rates;
}

std::vector<Measurement> run_benchmark(Backend& backend, const std::vector<TestSpec>& tests,
                                       const RepetitionPolicy& policy, const SamplingParams& sampling) {
  if (policy.repetitions < 1 || policy.warmup < 0) {
    fail("bench: want at least 1 repetition and no negative warm-up count");
  }
  int64_t longest = 1;
  for (const TestSpec& t : tests) {
    longest = std::max(longest, t.context_before() + t.n_prompt + t.n_gen);
  }
  const std::vector<int32_t> tokens =
      random_tokens(longest, backend.config().vocab_size, kTokenSeed);
  BatchRunner runner(backend);
  Picker picker(sampling);
  std::vector<Measurement> results;
  for (const TestSpec& test : tests) results.push_back(measure(runner, picker, test, policy, tokens));
  return results;
}

std::string describe_sampling(const SamplingParams& p) {
  if (p.is_plain_greedy()) return "greedy";
  std::string s = fmt::format("temperature {}, top-k {}, top-p {}, min-p {}", p.temperature, p.top_k, p.top_p, p.min_p);
  if (p.has_penalties()) {
    s += fmt::format(", repeat penalty {}, presence {}, frequency {} over {} tokens", p.repeat_penalty,
                     p.presence_penalty, p.frequency_penalty, p.penalty_last_n);
  }
  return s;
}

double decode_bytes_per_step(const TestSpec& test, uint64_t weight_bytes, int64_t kv_bytes) {
  // Step i (from 0) reads context_before + n_prompt + i + 1 cached tokens per sequence, the one
  // it appends included; the mean over n_gen steps is context + n_prompt + (n_gen + 1) / 2.
  const double cached = static_cast<double>(test.context_before() + test.n_prompt) +
                        static_cast<double>(test.n_gen + 1) / 2.0;
  return static_cast<double>(weight_bytes) +
         static_cast<double>(test.parallel) * cached * static_cast<double>(kv_bytes);
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
