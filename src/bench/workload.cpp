#include "bench/workload.h"

#include <charconv>
#include <cmath>
#include <mutex>
#include <random>
#include <thread>

#include "realizar/error.h"

namespace realizar::bench {
namespace {

int64_t parse_length(std::string_view text, std::string_view what, std::string_view whole) {
  int64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < 1) {
    fail("{}: want a token count such as 256 or a range such as 128-1024, got '{}'", what, whole);
  }
  return value;
}

// Uniform integer in [range.min, range.max] from 64 random bits (Lemire's multiply-shift; the
// bias is below 2^-40 for any range that fits a prompt).
int64_t draw_length(std::mt19937_64& rng, TokenRange range) {
  const auto width = static_cast<unsigned __int128>(range.max - range.min + 1);
  return range.min + static_cast<int64_t>((width * rng()) >> 64);
}

// Exponential gap with mean 1 / rate: -ln(1 - u) / rate with u uniform in [0, 1).
double draw_gap(std::mt19937_64& rng, double rate) {
  const double u = static_cast<double>(rng() >> 11) * 0x1.0p-53;
  return -std::log1p(-u) / rate;
}

void check_range(TokenRange range, const char* what) {
  if (range.min < 1 || range.max < range.min) {
    fail("serving workload: {} range {}-{} is empty or below 1", what, range.min, range.max);
  }
}

}  // namespace

TokenRange parse_token_range(std::string_view text, std::string_view what) {
  const size_t dash = text.find('-');
  if (dash == std::string_view::npos) {
    const int64_t n = parse_length(text, what, text);
    return {n, n};
  }
  const TokenRange range{parse_length(text.substr(0, dash), what, text),
                         parse_length(text.substr(dash + 1), what, text)};
  if (range.min > range.max) fail("{}: range '{}' has its minimum above its maximum", what, text);
  return range;
}

std::vector<PlannedRequest> plan_requests(const ServingWorkload& w) {
  if (w.requests < 1) fail("serving workload: want at least 1 request, got {}", w.requests);
  if (w.concurrency < 0) fail("serving workload: concurrency {} is negative", w.concurrency);
  if (!(w.rate >= 0) || !std::isfinite(w.rate)) {
    fail("serving workload: rate {} is not a number of requests per second", w.rate);
  }
  check_range(w.prompt_tokens, "prompt length");
  check_range(w.output_tokens, "output length");
  std::mt19937_64 rng(w.seed);
  std::vector<PlannedRequest> plan;
  double arrival = 0;
  for (int i = 0; i < w.requests; ++i) {
    PlannedRequest r;
    r.index = i;
    r.prompt_tokens = draw_length(rng, w.prompt_tokens);
    r.output_tokens = draw_length(rng, w.output_tokens);
    if (w.rate > 0 && i > 0) arrival += draw_gap(rng, w.rate);
    r.arrival_seconds = arrival;
    plan.push_back(r);
  }
  return plan;
}

std::vector<RequestRecord> run_workload(const std::vector<PlannedRequest>& plan, int concurrency,
                                        const RequestExecutor& execute) {
  const size_t workers = concurrency > 0 ? std::min(plan.size(), static_cast<size_t>(concurrency))
                                         : plan.size();
  std::vector<RequestRecord> records(plan.size());
  std::mutex mutex;
  size_t next = 0;  // the next request to hand out; plan order is arrival order
  const WorkloadClock::time_point start = WorkloadClock::now();
  // Each worker takes the next request, waits for its arrival time and runs it: at most
  // `workers` requests are in flight, and none starts before it arrives.
  auto work = [&] {
    for (;;) {
      size_t i;
      {
        std::lock_guard<std::mutex> lock(mutex);
        if (next == plan.size()) return;
        i = next++;
      }
      std::this_thread::sleep_until(
          start + std::chrono::duration_cast<WorkloadClock::duration>(
                      std::chrono::duration<double>(plan[i].arrival_seconds)));
      try {
        records[i] = execute(plan[i], start);
      } catch (const std::exception& e) {  // an executor's bug must not end the process
        records[i].error = e.what();
        records[i].send_time = records[i].end_time =
            std::chrono::duration<double>(WorkloadClock::now() - start).count();
      }
    }
  };
  std::vector<std::thread> threads;
  for (size_t t = 0; t < workers; ++t) threads.emplace_back(work);
  for (std::thread& t : threads) t.join();
  return records;
}

}  // namespace realizar::bench
