#include "bench/report_json.h"

#include "realizar/error.h"

namespace realizar::bench {
namespace {

nlohmann::json percentile_fields(const Percentiles& p, double mean) {
  return {{"p50", p.p50}, {"p95", p.p95}, {"p99", p.p99}, {"mean", mean}};
}

nlohmann::json latency_json(const std::optional<Latency>& latency) {
  if (!latency) return nullptr;
  return percentile_fields(latency->percentiles, latency->mean);
}

std::vector<double> seconds_to_ms(const std::vector<double>& seconds) {
  std::vector<double> ms;
  for (double s : seconds) ms.push_back(1e3 * s);
  return ms;
}

void require(bool ok, const std::string& source, const std::string& what) {
  if (!ok) fail("{}: not an apr bench result ({})", source, what);
}

}  // namespace

nlohmann::json summary_json(std::span<const double> samples) {
  const Summary s = summarize(samples);
  return {{"count", s.count},
          {"mean", s.mean},
          {"median", s.median},
          {"stdev", s.stdev},
          {"cv", s.cv},
          {"min", s.min},
          {"max", s.max},
          {"median_ci",
           {{"low", s.median_ci.low}, {"high", s.median_ci.high}, {"level", s.median_ci.level}}},
          {"outliers", s.outliers},
          {"samples", std::vector<double>(samples.begin(), samples.end())}};
}

nlohmann::json percentiles_json(std::span<const double> samples) {
  if (samples.empty()) return nullptr;
  double sum = 0;
  for (double x : samples) sum += x;
  return percentile_fields(percentiles(samples), sum / static_cast<double>(samples.size()));
}

nlohmann::json model_result_json(const Measurement& m, const DecodeFloor& floor) {
  const TestSpec& t = m.test;
  const std::vector<double> rates = m.tokens_per_second();
  const Summary s = summarize(rates);
  nlohmann::json row = {{"test", t.name()},
                        {"n_prompt", t.n_prompt},
                        {"n_gen", t.n_gen},
                        {"n_depth", t.n_depth},
                        {"parallel", t.parallel},
                        {"context_tokens", t.context_before()},
                        {"tokens", t.tokens()},
                        {"warmup_runs", m.warmup_runs},
                        {"seconds", m.seconds},
                        {"tokens_per_second", summary_json(rates)},
                        {"tokens_per_second_mean", s.mean},
                        {"tokens_per_second_stdev", s.stdev},
                        {"per_sequence_tokens_per_second", s.mean / t.parallel},
                        {"ttft_ms", percentiles_json(seconds_to_ms(m.prefill_seconds))},
                        {"token_latency_ms", percentiles_json(seconds_to_ms(m.step_seconds))},
                        {"bytes_read_per_step", nullptr},
                        {"bandwidth_fraction", nullptr}};
  if (t.is_decode() && floor.bandwidth.bytes_per_second > 0) {
    // Each step reads the weights once, whatever the number of sequences in the batch.
    const double bytes = decode_bytes_per_step(t, floor.weight_bytes_per_token,
                                               floor.kv_bytes_per_token);
    const double steps_per_second = s.mean / t.parallel;
    row["bytes_read_per_step"] = bytes;
    row["bandwidth_fraction"] = steps_per_second * bytes / floor.bandwidth.bytes_per_second;
  }
  return row;
}

nlohmann::json serving_run_json(const ServingMetrics& m) {
  return {{"completed", m.completed},
          {"failed", m.failed},
          {"duration_seconds", m.duration_seconds},
          {"prompt_tokens", m.prompt_tokens},
          {"output_tokens", m.output_tokens},
          {"cached_prompt_tokens", m.cached_prompt_tokens},
          {"request_throughput", m.request_throughput},
          {"output_throughput", m.output_throughput},
          {"total_token_throughput", m.total_token_throughput},
          {"aggregate_decode_throughput", m.aggregate_decode_throughput},
          {"ttft_ms", latency_json(m.ttft_ms)},
          {"itl_ms", latency_json(m.itl_ms)},
          {"tpot_ms", latency_json(m.tpot_ms)},
          {"e2e_ms", latency_json(m.e2e_ms)},
          {"errors", m.errors}};
}

nlohmann::json serving_server_json(const std::string& name, const std::string& url,
                                   const std::string& model, const std::string& role,
                                   const std::vector<std::vector<RequestRecord>>& runs) {
  if (runs.empty()) fail("serving report: {} has no runs", name);
  nlohmann::json run_rows = nlohmann::json::array();
  std::vector<double> output, requests, decode, total;
  std::vector<RequestRecord> pooled;
  int64_t completed = 0, failed = 0;
  for (const std::vector<RequestRecord>& run : runs) {
    const ServingMetrics m = summarize_serving(run);
    run_rows.push_back(serving_run_json(m));
    output.push_back(m.output_throughput);
    requests.push_back(m.request_throughput);
    decode.push_back(m.aggregate_decode_throughput);
    total.push_back(m.total_token_throughput);
    completed += m.completed;
    failed += m.failed;
    pooled.insert(pooled.end(), run.begin(), run.end());
  }
  // Latency percentiles over every request: pooling keeps the tail that per-run medians hide.
  // The runs' own clocks differ, but latencies are differences within one request.
  const ServingMetrics all = summarize_serving(pooled);
  return {{"name", name},
          {"url", url.empty() ? nlohmann::json(nullptr) : nlohmann::json(url)},
          {"model", model},
          {"role", role},
          {"completed", completed},
          {"failed", failed},
          {"errors", all.errors},
          {"output_throughput", summary_json(output)},
          {"request_throughput", summary_json(requests)},
          {"aggregate_decode_throughput", summary_json(decode)},
          {"total_token_throughput", summary_json(total)},
          {"ttft_ms", latency_json(all.ttft_ms)},
          {"itl_ms", latency_json(all.itl_ms)},
          {"tpot_ms", latency_json(all.tpot_ms)},
          {"e2e_ms", latency_json(all.e2e_ms)},
          {"runs", run_rows}};
}

void check_document(const nlohmann::json& doc, const std::string& source) {
  require(doc.is_object(), source, "not a JSON object");
  require(doc.value("schema_version", 0) == kSchemaVersion, source,
          "schema_version is not " + std::to_string(kSchemaVersion));
  const std::string kind = doc.value("kind", "");
  require(kind == "model" || kind == "serve", source, "kind is neither \"model\" nor \"serve\"");
  require(doc.contains("environment") && doc["environment"].is_object(), source, "no environment");
  // What bench compare reads: rates with a mean and, when present, a well-formed interval.
  auto rate_summary = [&](const nlohmann::json& s) {
    if (!s.is_object() || !s.contains("mean") || !s["mean"].is_number()) return false;
    if (!s.contains("median_ci")) return true;
    const nlohmann::json& ci = s["median_ci"];
    return ci.is_object() && ci.value("low", nlohmann::json()).is_number() &&
           ci.value("high", nlohmann::json()).is_number() && ci.value("level", nlohmann::json()).is_number();
  };
  if (kind == "model") {
    require(doc.contains("results") && doc["results"].is_array(), source, "no results");
    for (const auto& r : doc["results"]) {
      require(r.is_object() && r.contains("test") && r["test"].is_string() && r.contains("tokens_per_second") &&
                  rate_summary(r["tokens_per_second"]),
              source, "a result lacks test or tokens_per_second");
    }
    return;
  }
  require(doc.contains("servers") && doc["servers"].is_array(), source, "no servers");
  for (const auto& s : doc["servers"]) {
    require(s.is_object() && s.contains("name") && s["name"].is_string() && s.contains("runs"), source,
            "a server lacks name or runs");
    for (const char* key : {"output_throughput", "request_throughput", "aggregate_decode_throughput"}) {
      require(s.contains(key) && rate_summary(s[key]), source, std::string("a server lacks ") + key);
    }
    for (const char* key : {"ttft_ms", "itl_ms", "e2e_ms"}) {
      require(s.contains(key) && (s[key].is_null() || (s[key].is_object() && s[key].value("p50", nlohmann::json()).is_number())),
              source, std::string("a server's ") + key + " is not percentiles");
    }
  }
}

}  // namespace realizar::bench
