// Metrics of a serving run computed from per-request timestamps, with the names vLLM's
// benchmark_serving and the OpenAI-compatible servers' tooling use: TTFT, ITL, TPOT, end-to-end
// latency, request and token throughput. Shared by `apr bench serve` (requests over HTTP) and the
// in-process serving workload (Engine::submit); neither depends on how the times were taken.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "bench/stats.h"

namespace realizar::bench {

// One request as the client saw it. Times are seconds since the start of the run (the same
// clock for every request of the run).
struct RequestRecord {
  int64_t prompt_tokens = 0;         // as the server counted them (usage), else as sent
  int64_t output_tokens = 0;         // generated tokens
  int64_t cached_prompt_tokens = 0;  // prompt tokens served from a prefix cache
  double send_time = 0;
  double first_token_time = 0;       // arrival of the first generated token
  std::vector<double> token_times;   // arrival of each streamed token (or chunk), in order
  double end_time = 0;               // the response is complete
  std::string error;                 // empty: the request succeeded

  bool ok() const { return error.empty(); }
};

struct Latency {
  Percentiles percentiles;
  double mean = 0;
};

struct ServingMetrics {
  int64_t completed = 0;
  int64_t failed = 0;
  double duration_seconds = 0;       // first send to last end, over all requests
  int64_t prompt_tokens = 0;         // sums over completed requests
  int64_t output_tokens = 0;
  int64_t cached_prompt_tokens = 0;
  double request_throughput = 0;     // completed requests / duration, requests/s
  double output_throughput = 0;      // output tokens / duration, tok/s
  double total_token_throughput = 0; // (prompt + output tokens) / duration, tok/s
  // Decode tokens per second while any request was decoding: Σ over requests of (output tokens
  // - 1), over the length of the union of their [first token, last token] intervals. For N
  // sequences decoding together it is their decode rates summed, what `apr bench --parallel N`
  // reports; requests that decode one batch after another (a concurrency limit) are not summed
  // as if they had overlapped. Requests with fewer than two token arrivals add nothing.
  double aggregate_decode_throughput = 0;
  // Latencies in milliseconds. TTFT: send to first token. ITL: between consecutive token
  // arrivals, pooled over requests. TPOT: (end-to-end - TTFT) / (output tokens - 1) per request
  // with at least two tokens. E2E: send to end. Empty when no request gave a sample.
  std::optional<Latency> ttft_ms, itl_ms, tpot_ms, e2e_ms;
  std::vector<std::string> errors;   // the distinct error messages, in first-seen order
};

// Throws realizar::Error when `records` is empty or a completed record's times are not ordered
// (send <= first token <= each token time <= end).
ServingMetrics summarize_serving(std::span<const RequestRecord> records);

}  // namespace realizar::bench
