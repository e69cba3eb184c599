// Markdown (standard output) and CSV renderings of a benchmark document (report_json.h), for a
// model run ("model": one row per test, imported llama-bench results and their ratios beside
// ours) and for a serving run ("serve": one row per metric, one column per server, ratios to each
// baseline).
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace realizar::bench {

// A heading, the environment (build, host, GPU, model, bandwidth, method) as a list, the table,
// and the notes that say how to read it. `doc` must pass check_document.
std::string markdown_report(const nlohmann::json& doc);

// RFC 4180 CSV with a header row: for "model", one row per result of realizar and of every
// baseline (engine column first); for "serve", one row per server.
std::string csv_report(const nlohmann::json& doc);

// "98832", "164.3", "45.28", "3.142": four significant figures, at least one decimal below
// 1000 and none above, as the tables print rates.
std::string format_number(double value);

}  // namespace realizar::bench
