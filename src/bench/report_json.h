// The JSON document `apr bench` writes (docs/bench.schema.json): one source of truth from which
// the Markdown table, the CSV, the SVG chart and `apr bench compare` are all rendered, whether
// the run just happened or was read back from a file.
#pragma once

#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/bandwidth.h"
#include "bench/bench.h"
#include "bench/serving_metrics.h"
#include "bench/stats.h"

namespace realizar::bench {

constexpr int kSchemaVersion = 1;

// {count, mean, median, stdev, cv, min, max, median_ci: {low, high, level}, outliers, samples}.
nlohmann::json summary_json(std::span<const double> samples);

// {p50, p95, p99, mean} of `samples`, null when empty.
nlohmann::json percentiles_json(std::span<const double> samples);

// What decode bandwidth use is computed from.
struct DecodeFloor {
  uint64_t weight_bytes_per_token = 0;  // weight_bytes_per_token (model.h): read once per step
  int64_t kv_bytes_per_token = 0;       // Backend::kv_bytes_per_token
  Bandwidth bandwidth;
};

// One row of "results": the test's shape, its runs, the tok/s summary, latency percentiles (pp:
// prompt to first token per run; tg: per decode step), and for decode tests the bytes read per
// step and bandwidth_fraction = steps/s x bytes per step / bandwidth.
nlohmann::json model_result_json(const Measurement& m, const DecodeFloor& floor);

// The metrics of one serving run ("runs" of a server): completed, failed, duration_seconds,
// throughputs, token sums, ttft_ms / itl_ms / tpot_ms / e2e_ms percentiles, errors.
nlohmann::json serving_run_json(const ServingMetrics& m);

// One entry of a serve document's "servers": the runs (one per repetition of the workload), the
// throughput summaries over runs, and the latency percentiles pooled over every request of every
// run. `url` may be empty (in-process).
nlohmann::json serving_server_json(const std::string& name, const std::string& url,
                                   const std::string& model, const std::string& role,
                                   const std::vector<std::vector<RequestRecord>>& runs);

// Throws realizar::Error naming `source` when `doc` is not a benchmark document of this schema
// version (kind "model" or "serve" with its required parts), so that renderers can rely on it.
void check_document(const nlohmann::json& doc, const std::string& source);

}  // namespace realizar::bench
