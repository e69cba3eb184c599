// `apr bench MODEL`: prefill and decode throughput of a model on a backend, in llama-bench's and
// llama-batched-bench's vocabulary so that numbers line up:
//   pp P          one batch of P prompt tokens;
//   tg N          N single-token decode steps;
//   pp P+tg N     a prompt of P tokens then N decode steps, timed together (llama-bench -pg);
//   ... @ dD      the same after D tokens already in the cache (llama-bench -d; not timed);
//   tg N xS       S sequences decoding together, one token each per step, each after its own
//                 prompt (llama-batched-bench's npl): aggregate tok/s over all sequences.
// Each test gets warm-up runs (discarded) and measured runs (stats.h's RepetitionPolicy). Every
// step ends with the greedy pick of the next token on the backend, as
// `apr run --temp 0` decodes (Backend::sample with greedy rows, through a BatchRunner that keeps
// the sequences' cache bookkeeping); the tokens fed are fixed random ids, like llama-bench's.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "bench/stats.h"
#include "realizar/backend.h"
#include "realizar/sampling.h"

namespace realizar::bench {

struct TestSpec {
  int64_t n_prompt = 0;  // prompt tokens timed (pp, pp+tg)
  int64_t n_gen = 0;     // decode steps timed (tg, pp+tg)
  int64_t n_depth = 0;   // -d: tokens in each sequence's cache before the timed part
  int parallel = 1;      // sequences decoding together (tg only)
  // Parallel decode at depth 0: the untimed prompt each sequence gets first (llama-batched-bench's
  // npp), so that the sequences decode over a context as a server's would.
  int64_t sequence_prompt = 0;

  // "pp512", "tg128", "pp512+tg128", "tg128 x32", with " @ d4096" when the depth is not the
  // default: llama-bench's test names.
  std::string name() const;
  // Tokens produced or consumed by one run: n_prompt + n_gen * parallel.
  int64_t tokens() const { return n_prompt + n_gen * parallel; }
  bool is_decode() const { return n_prompt == 0; }
  // Tokens in each sequence's cache when the timed part starts.
  int64_t context_before() const { return n_depth + sequence_prompt; }
};

struct BenchOptions {
  std::vector<int64_t> prompt_tokens = {512};    // -p; 0 entries are skipped
  std::vector<int64_t> generate_tokens = {128};  // -n; 0 entries are skipped
  std::vector<std::pair<int64_t, int64_t>> prompt_generate;  // -pg P,N
  std::vector<int64_t> depths = {0};             // -d
  std::vector<int> parallel = {1};               // --parallel
  RepetitionPolicy policy;
  SamplingParams sampling = greedy();            // how each step picks its tokens

  static SamplingParams greedy() {
    SamplingParams p;
    p.temperature = 0;
    return p;
  }
};

// "greedy", or the sampling parameters in words ("temperature 0.8, top-k 40, ...").
std::string describe_sampling(const SamplingParams& params);

// The tests in the order they run: for each depth, every pp, then every tg at each parallel
// count, then every pp+tg. Parallel decode tests at depth 0 start after a prompt of the first
// non-zero -p length (llama-batched-bench's npp), else after the depth. Throws realizar::Error
// for negative lengths, parallel counts below 1, or no test at all.
std::vector<TestSpec> plan_tests(const BenchOptions& options);

// The backend the tests need: cache slots for the widest test, parallel x (depth + prompt +
// generated + 8 tokens) with each sequence rounded up to 64 tokens (a multiple of the cache
// block; blocks are not shared between sequences), and that rounded length as the longest
// sequence.
BackendOptions backend_options(const std::vector<TestSpec>& tests, int threads);

struct Measurement {
  TestSpec test;
  std::vector<double> seconds;          // one per measured run: the timed part
  std::vector<double> prefill_seconds;  // per run, prompt to first token (pp, pp+tg)
  std::vector<double> step_seconds;     // every decode step of every measured run
  int warmup_runs = 0;

  // tokens() / seconds, one per run.
  std::vector<double> tokens_per_second() const;
};

// Runs every test on `backend` (built with backend_options(tests)), each step picking its tokens
// with `sampling` (Backend::sample: on a GPU backend, on the device), showing progress on
// standard error for tests that take more than a second.
std::vector<Measurement> run_benchmark(Backend& backend, const std::vector<TestSpec>& tests,
                                       const RepetitionPolicy& policy, const SamplingParams& sampling);

// Bytes a decode step of `test` reads on average: the weights once, plus every sequence's keys
// and values (depth + the mean number of tokens generated so far).
double decode_bytes_per_step(const TestSpec& test, uint64_t weight_bytes, int64_t kv_bytes);

// Device-memory copy bandwidth in bytes/s counting bytes read plus bytes written (METHOD.md):
// memcpy of a buffer much larger than the last-level cache, best of several runs, on
// `threads` threads. (engine's measure_copy_bandwidth uses it; `apr bench` measures the host
// with measure_host_read_bandwidth, bandwidth.h.)
double measure_host_copy_bandwidth(int threads);

}  // namespace realizar::bench
