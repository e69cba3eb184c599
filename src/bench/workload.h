// The serving workload: N requests whose prompt and output lengths are drawn uniformly from
// ranges with a fixed seed, arriving all at once or as a Poisson process at a given rate, with at
// most C in flight (vLLM's benchmark_serving: --request-rate, --max-concurrency, the "random"
// dataset). Shared by `apr bench serve` and the in-process serving workload: the plan is the same
// list of requests whoever executes it.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string_view>
#include <vector>

#include "bench/serving_metrics.h"

namespace realizar::bench {

struct TokenRange {
  int64_t min = 0;  // inclusive
  int64_t max = 0;  // inclusive
};

// "128-1024" or a single length "256". Throws realizar::Error naming `what` for anything else,
// including min > max and lengths below 1.
TokenRange parse_token_range(std::string_view text, std::string_view what);

struct ServingWorkload {
  int requests = 32;
  TokenRange prompt_tokens{128, 1024};
  TokenRange output_tokens{64, 256};
  double rate = 0;      // requests per second, Poisson arrivals; 0: all arrive at time 0
  int concurrency = 0;  // most requests in flight at once; 0: no limit
  uint64_t seed = 0;
};

struct PlannedRequest {
  int index = 0;
  int64_t prompt_tokens = 0;
  int64_t output_tokens = 0;
  double arrival_seconds = 0;  // since the start of the run
};

// The requests of `workload` in arrival order. Lengths and gaps come from one mt19937_64 stream
// seeded with workload.seed (its output is fixed by the C++ standard; the mapping to ranges and
// exponential gaps is ours), so a seed names the same plan on every platform. Throws
// realizar::Error for requests < 1, concurrency < 0, a negative or non-finite rate or an empty
// range.
std::vector<PlannedRequest> plan_requests(const ServingWorkload& workload);

using WorkloadClock = std::chrono::steady_clock;

// Executes one request and returns its record with times in seconds since `run_start`. Must not
// throw: failures go into RequestRecord::error.
using RequestExecutor =
    std::function<RequestRecord(const PlannedRequest&, WorkloadClock::time_point run_start)>;

// Runs the plan: each request is handed to `execute` on a worker thread at its arrival time, or
// later while `concurrency` requests (0: no limit) are in flight. Returns the records in plan
// order.
std::vector<RequestRecord> run_workload(const std::vector<PlannedRequest>& plan, int concurrency,
                                        const RequestExecutor& execute);

}  // namespace realizar::bench
