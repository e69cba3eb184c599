// `apr bench`: prefill and decode throughput of a model on a backend, measured the way
// llama-bench does (pp: one batch of P prompt tokens; tg: N single-token decode steps from an
// empty cache), reported as mean ± sample standard deviation over repetitions after a warm-up.
// Each step ends with the greedy pick of the next token on the backend (Backend::sample),
// as `apr run --temp 0` decodes; the tokens fed are fixed random ids, like llama-bench's.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "realizar/backend.h"

namespace realizar::bench {

struct BenchOptions {
  int64_t prompt_tokens = 512;     // -p; 0 skips the prefill test
  int64_t generate_tokens = 128;   // -n; 0 skips the decode test
  int repetitions = 5;             // -r
  int parallel = 1;                // sequences decoded at once (each after its own prompt)
};

struct Measurement {
  std::string test;            // "pp512", "tg128", "tg128 x32" ...
  int64_t tokens = 0;          // tokens per repetition
  std::vector<double> seconds;  // one per repetition

  double mean_tokens_per_second() const;
  double stdev_tokens_per_second() const;
};

// Runs the tests. Token ids are drawn from a fixed-seed generator (no tokenizer involved).
std::vector<Measurement> run_benchmark(Backend& backend, const BenchOptions& options);

// Device-memory copy bandwidth in bytes/s counting bytes read plus bytes written (METHOD.md):
// memcpy of a buffer much larger than the last-level cache, best of several runs, on
// `threads` threads.
double measure_host_copy_bandwidth(int threads);

}  // namespace realizar::bench
