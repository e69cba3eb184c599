#include "server/prometheus.h"

#include <fmt/format.h>

#include <cmath>

namespace realizar::server {
namespace {

// Writes one metric family after another; every sample of the engine carries the model_name
// label, as vLLM's do, so dashboards built for vLLM can select on it.
class Writer {
 public:
  explicit Writer(std::string_view model_name) : model_label_(fmt::format("model_name=\"{}\"", escape_label_value(model_name))) {}

  void family(std::string_view name, std::string_view type, std::string_view help) {
    out_ += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  }
  void sample(std::string_view name, double value, std::string_view extra_labels = {}) {
    out_ += fmt::format("{}{{{}{}{}}} {}\n", name, model_label_, extra_labels.empty() ? "" : ",", extra_labels,
                        number(value));
  }
  void gauge(std::string_view name, std::string_view help, double value) {
    family(name, "gauge", help);
    sample(name, value);
  }
  void counter(std::string_view name, std::string_view help, double value) {
    family(name, "counter", help);
    sample(name, value);
  }
  // Buckets are cumulative on the wire (Histogram's counts are per bucket).
  void histogram(std::string_view name, std::string_view help, const Histogram& h) {
    family(name, "histogram", help);
    uint64_t cumulative = 0;
    const std::string bucket = fmt::format("{}_bucket", name);
    for (size_t i = 0; i < h.bounds.size(); ++i) {
      cumulative += h.counts[i];
      sample(bucket, static_cast<double>(cumulative), fmt::format("le=\"{}\"", number(h.bounds[i])));
    }
    sample(bucket, static_cast<double>(h.count), "le=\"+Inf\"");
    sample(fmt::format("{}_sum", name), h.sum);
    sample(fmt::format("{}_count", name), static_cast<double>(h.count));
  }
  void raw(std::string_view text) { out_ += text; }
  std::string take() { return std::move(out_); }

 private:
  static std::string number(double v) {
    if (std::isnan(v)) return "NaN";
    if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
    return fmt::format("{}", v);
  }

  std::string model_label_;
  std::string out_;
};

// vLLM's finished_reason values: "abort" for a request that was cancelled.
std::string_view finished_reason_label(const std::string& reason) {
  return reason == "cancelled" ? std::string_view("abort") : std::string_view(reason);
}

}  // namespace

std::string escape_label_value(std::string_view value) {
  std::string out;
  for (const char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string prometheus_text(const EngineMetrics& m, std::string_view model_name,
                            const std::map<int, int64_t>& http_responses) {
  Writer w(model_name);
  w.gauge("realizar:num_requests_running", "Requests being computed (prefill or decode).",
          static_cast<double>(m.requests_running));
  w.gauge("realizar:num_requests_waiting", "Requests waiting to be admitted (or readmitted after preemption).",
          static_cast<double>(m.requests_waiting));
  const double usage = m.kv_blocks_total > 0 ? static_cast<double>(m.kv_blocks_used) / m.kv_blocks_total : 0.0;
  w.gauge("realizar:kv_cache_usage_perc", "Fraction of KV cache blocks held by sequences (1 = full).", usage);
  w.gauge("realizar:kv_cache_blocks_total", "KV cache blocks in the pool.", static_cast<double>(m.kv_blocks_total));
  w.gauge("realizar:kv_cache_blocks_used", "KV cache blocks held by at least one sequence.",
          static_cast<double>(m.kv_blocks_used));
  w.gauge("realizar:kv_cache_blocks_free", "KV cache blocks an allocation can take (cached ones included).",
          static_cast<double>(m.kv_blocks_free));
  w.gauge("realizar:kv_cache_blocks_cached", "Free KV cache blocks that still hold a cached prefix.",
          static_cast<double>(m.kv_blocks_cached));
  w.gauge("realizar:kv_cache_block_size_tokens", "Tokens per KV cache block.", static_cast<double>(m.kv_block_size));
  w.counter("realizar:prefix_cache_queries_total", "Prompt tokens looked up in the prefix cache.",
            static_cast<double>(m.prefix_cache_queries));
  w.counter("realizar:prefix_cache_hits_total", "Prompt tokens found in the prefix cache.",
            static_cast<double>(m.prefix_cache_hits));
  w.counter("realizar:num_preemptions_total", "Sequences preempted (blocks freed, recomputed later).",
            static_cast<double>(m.preemptions));
  w.counter("realizar:prompt_tokens_total", "Prompt tokens computed (prefix-cache hits excluded).",
            static_cast<double>(m.prompt_tokens));
  w.counter("realizar:generation_tokens_total", "Tokens generated.", static_cast<double>(m.generation_tokens));
  w.counter("realizar:engine_steps_total", "Scheduler steps run (batches computed).", static_cast<double>(m.steps));
  w.family("realizar:request_success_total", "counter", "Requests finished, by finish reason (abort: cancelled).");
  for (const auto& [reason, count] : m.requests_finished) {
    w.sample("realizar:request_success_total", static_cast<double>(count),
             fmt::format("finished_reason=\"{}\"", escape_label_value(finished_reason_label(reason))));
  }
  w.histogram("realizar:time_to_first_token_seconds", "Time from submission to the first generated token.",
              m.time_to_first_token);
  w.histogram("realizar:inter_token_latency_seconds", "Time between consecutive generated tokens of a request.",
              m.inter_token_latency);
  w.histogram("realizar:e2e_request_latency_seconds", "Time from submission to the end of a finished request.",
              m.e2e_request_latency);
  w.histogram("realizar:request_queue_time_seconds", "Time from submission to first being scheduled.",
              m.request_queue_time);
  w.histogram("realizar:iteration_tokens_total", "Tokens per engine step (decode rows and prompt chunks).",
              m.iteration_tokens);
  w.histogram("realizar:engine_step_duration_seconds",
              "Time of an engine step's batch through the backend (forward pass and sampling).", m.step_duration);
  w.raw("# HELP realizar:http_responses_total HTTP responses sent, by status code.\n"
        "# TYPE realizar:http_responses_total counter\n");
  for (const auto& [status, count] : http_responses) {
    w.raw(fmt::format("realizar:http_responses_total{{code=\"{}\"}} {}\n", status, count));
  }
  return w.take();
}

}  // namespace realizar::server
