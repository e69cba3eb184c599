#include "bench/serving_metrics.h"

#include <algorithm>
#include <limits>

#include "realizar/error.h"

namespace realizar::bench {
namespace {

void check_order(const RequestRecord& r, size_t index) {
  double last = r.send_time;
  auto at_least_last = [&](double t, const char* what) {
    if (!(t >= last)) {
      fail("serving metrics: request {}: {} at {:.6f} s comes before {:.6f} s", index, what, t,
           last);
    }
    last = t;
  };
  if (r.output_tokens > 0 || !r.token_times.empty()) at_least_last(r.first_token_time, "first token");
  for (double t : r.token_times) at_least_last(t, "a token");
  at_least_last(r.end_time, "the end");
}

double mean_of(const std::vector<double>& values) {
  double sum = 0;
  for (double v : values) sum += v;
  return values.empty() ? 0.0 : sum / static_cast<double>(values.size());
}

// Length of the union of [begin, end] intervals.
double union_length(std::vector<std::pair<double, double>> intervals) {
  std::sort(intervals.begin(), intervals.end());
  double total = 0, begin = 0, end = -std::numeric_limits<double>::infinity();
  for (const auto& [b, e] : intervals) {
    if (b > end) {
      if (end > begin) total += end - begin;
      begin = b;
      end = e;
    } else {
      end = std::max(end, e);
    }
  }
  if (end > begin) total += end - begin;
  return total;
}

std::optional<Latency> latency_of(const std::vector<double>& values) {
  if (values.empty()) return std::nullopt;
  return Latency{percentiles(values), mean_of(values)};
}

}  // namespace

ServingMetrics summarize_serving(std::span<const RequestRecord> records) {
  if (records.empty()) fail("serving metrics: no requests");
  ServingMetrics m;
  double start = std::numeric_limits<double>::infinity();
  double end = -std::numeric_limits<double>::infinity();
  std::vector<double> ttft, itl, tpot, e2e;
  std::vector<std::pair<double, double>> decode_intervals;
  double decode_tokens = 0;
  for (size_t i = 0; i < records.size(); ++i) {
    const RequestRecord& r = records[i];
    start = std::min(start, r.send_time);
    end = std::max(end, r.end_time);
    if (!r.ok()) {
      ++m.failed;
      if (std::find(m.errors.begin(), m.errors.end(), r.error) == m.errors.end()) {
        m.errors.push_back(r.error);
      }
      continue;
    }
    check_order(r, i);
    ++m.completed;
    m.prompt_tokens += r.prompt_tokens;
    m.output_tokens += r.output_tokens;
    m.cached_prompt_tokens += r.cached_prompt_tokens;
    e2e.push_back(1e3 * (r.end_time - r.send_time));
    if (r.output_tokens > 0) ttft.push_back(1e3 * (r.first_token_time - r.send_time));
    for (size_t t = 1; t < r.token_times.size(); ++t) {
      itl.push_back(1e3 * (r.token_times[t] - r.token_times[t - 1]));
    }
    if (r.output_tokens > 1) {
      tpot.push_back(1e3 * (r.end_time - r.first_token_time) /
                     static_cast<double>(r.output_tokens - 1));
    }
    if (r.token_times.size() > 1 && r.token_times.back() > r.token_times.front()) {
      decode_intervals.emplace_back(r.token_times.front(), r.token_times.back());
      decode_tokens += static_cast<double>(r.output_tokens - 1);
    }
  }
  const double decoding = union_length(decode_intervals);
  if (decoding > 0) m.aggregate_decode_throughput = decode_tokens / decoding;
  m.duration_seconds = end - start;
  if (m.duration_seconds > 0) {
    m.request_throughput = static_cast<double>(m.completed) / m.duration_seconds;
    m.output_throughput = static_cast<double>(m.output_tokens) / m.duration_seconds;
    m.total_token_throughput =
        static_cast<double>(m.prompt_tokens + m.output_tokens) / m.duration_seconds;
  }
  m.ttft_ms = latency_of(ttft);
  m.itl_ms = latency_of(itl);
  m.tpot_ms = latency_of(tpot);
  m.e2e_ms = latency_of(e2e);
  return m;
}

}  // namespace realizar::bench
