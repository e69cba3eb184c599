#include "bench/compare.h"

#include <algorithm>
#include <map>

#include <fmt/format.h>

#include "bench/report_text.h"
#include "realizar/error.h"

namespace realizar::bench {
namespace {

using nlohmann::json;

struct Figure {
  double value = 0;
  bool higher_is_better = true;
  const json* summary = nullptr;  // for the interval; null for latencies
};

bool has_interval(const json* s) {
  return s != nullptr && s->contains("median_ci") && (*s)["median_ci"]["level"].get<double>() > 0;
}

std::map<std::string, Figure> figures(const json& doc) {
  std::map<std::string, Figure> out;
  if (doc["kind"] == "model") {
    for (const json& r : doc["results"]) {
      out[r["test"].get<std::string>()] = {r["tokens_per_second"]["mean"].get<double>(), true, &r["tokens_per_second"]};
    }
    return out;
  }
  for (const json& s : doc["servers"]) {
    const std::string name = s["name"].get<std::string>();
    for (const auto& [key, label] : {std::pair{"output_throughput", "output tok/s"},
                                     std::pair{"aggregate_decode_throughput", "aggregate decode tok/s"},
                                     std::pair{"request_throughput", "requests/s"}}) {
      out[name + ": " + label] = {s[key]["mean"].get<double>(), true, &s[key]};
    }
    for (const auto& [key, label] : {std::pair{"ttft_ms", "TTFT p50 ms"}, std::pair{"itl_ms", "ITL p50 ms"},
                                     std::pair{"e2e_ms", "E2E p50 ms"}}) {
      if (s[key].is_object()) out[name + ": " + label] = {s[key]["p50"].get<double>(), false, nullptr};
    }
  }
  return out;
}

}  // namespace

bool Comparison::regressed() const {
  return std::any_of(rows.begin(), rows.end(), [](const ComparisonRow& r) { return r.regression; });
}

Comparison compare_documents(const json& before, const json& after, double threshold) {
  if (before["kind"] != after["kind"]) {
    fail("bench compare: cannot compare a {} run with a {} run", before["kind"].get<std::string>(),
         after["kind"].get<std::string>());
  }
  const std::map<std::string, Figure> a = figures(before), b = figures(after);
  Comparison c;
  c.threshold = threshold;
  for (const auto& [key, fa] : a) {
    const auto it = b.find(key);
    if (it == b.end()) {
      c.only_before.push_back(key);
      continue;
    }
    const Figure& fb = it->second;
    ComparisonRow row{key, fa.value, fb.value, fa.higher_is_better};
    row.have_intervals = has_interval(fa.summary) && has_interval(fb.summary);
    if (row.have_intervals) {
      const json& ia = (*fa.summary)["median_ci"];
      const json& ib = (*fb.summary)["median_ci"];
      row.intervals_overlap = ia["low"].get<double>() <= ib["high"].get<double>() &&
                              ib["low"].get<double>() <= ia["high"].get<double>();
    }
    const double change = fa.value != 0 ? fb.value / fa.value - 1 : 0;
    const double worse = row.higher_is_better ? -change : change;  // > 0: after is worse
    const bool separated = row.have_intervals && !row.intervals_overlap;
    row.regression = separated && worse > threshold;
    row.improvement = separated && -worse > threshold;
    c.rows.push_back(row);
  }
  for (const auto& [key, fb] : b) {
    if (a.find(key) == a.end()) c.only_after.push_back(key);
  }
  return c;
}

std::string comparison_markdown(const Comparison& c, const std::string& before_name,
                                const std::string& after_name) {
  std::string out = fmt::format("| row | {} | {} | change | median intervals | verdict |\n|---|---|---|---|---|---|\n",
                                before_name, after_name);
  for (const ComparisonRow& r : c.rows) {
    const double change = r.before != 0 ? r.after / r.before - 1 : 0;
    const char* verdict = r.regression ? "**regression**" : r.improvement ? "improvement" : "same within noise";
    if (!r.have_intervals) verdict = "no intervals to judge by";
    out += fmt::format("| {} | {} | {} | {:+.1f}% | {} | {} |\n", r.key, format_number(r.before),
                       format_number(r.after), 100 * change,
                       !r.have_intervals ? "–" : r.intervals_overlap ? "overlap" : "apart", verdict);
  }
  for (const std::string& k : c.only_before) out += fmt::format("\nonly in {}: {}\n", before_name, k);
  for (const std::string& k : c.only_after) out += fmt::format("\nonly in {}: {}\n", after_name, k);
  out += fmt::format("\nA regression is worse by more than {:.0f}% with the two medians' intervals apart{}\n",
                     100 * c.threshold, c.regressed() ? ": found." : ": none.");
  return out;
}

}  // namespace realizar::bench
