// `apr bench compare BEFORE.json AFTER.json`: per-row differences between two benchmark
// documents of the same kind, and the regression gate: a row regresses when AFTER is worse by
// more than the threshold (5%) and the two confidence intervals of the median do not overlap, so
// that noise alone does not fail a build (Hoefler & Belli, rule 6: compare with intervals).
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace realizar::bench {

struct ComparisonRow {
  std::string key;         // "tg128" (model); "apr: output tok/s" (serve)
  double before = 0;       // the mean (throughput) or p50 (latency)
  double after = 0;
  bool higher_is_better = true;
  bool have_intervals = false;  // both sides have a median interval with a level > 0
  bool intervals_overlap = false;
  bool regression = false;
  bool improvement = false;  // better by more than the threshold, intervals apart
};

struct Comparison {
  std::vector<ComparisonRow> rows;
  std::vector<std::string> only_before, only_after;  // keys present on one side only
  double threshold = 0.05;
  bool regressed() const;
};

// Throws realizar::Error when the documents' kinds differ.
Comparison compare_documents(const nlohmann::json& before, const nlohmann::json& after,
                             double threshold = 0.05);

// A Markdown table: key, before, after, change, intervals, verdict; then the one-sided keys.
std::string comparison_markdown(const Comparison& comparison, const std::string& before_name,
                                const std::string& after_name);

}  // namespace realizar::bench
