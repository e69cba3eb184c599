// GET /metrics: the engine's state and totals in the Prometheus text exposition format 0.0.4
// (https://prometheus.io/docs/instrumenting/exposition_formats/), named as vLLM names them under
// a `realizar:` prefix where vLLM has the metric (docs/server.md lists every name).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "realizar/engine.h"

namespace realizar::server {

// `http_responses`: responses sent so far by HTTP status.
std::string prometheus_text(const EngineMetrics& metrics, std::string_view model_name,
                            const std::map<int, int64_t>& http_responses);

// A label value with backslash, double quote and newline escaped, as the format requires.
std::string escape_label_value(std::string_view value);

}  // namespace realizar::server
