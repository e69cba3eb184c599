// A standalone SVG bar chart of a benchmark document, written as plain text (no scripts, no
// external fonts or styles): one panel per test for a model run (tok/s of realizar and each
// baseline, mean with ± 1 sd whiskers), and for a serving run panels of throughput per server and
// of TTFT / ITL / TPOT / E2E latency percentiles (p50, p95, p99) per server.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace realizar::bench {

// `doc` must pass check_document.
std::string svg_chart(const nlohmann::json& doc);

}  // namespace realizar::bench
