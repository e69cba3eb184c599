// `apr bench serve`: the serving workload (workload.h) against OpenAI-compatible servers over
// HTTP, the subject and its baselines in the same invocation, taken in turn run by run so that a
// drifting machine affects them alike. Before measuring, each server is checked: reachable, the
// model listed, and a short request answered.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/openai_client.h"
#include "bench/workload.h"

namespace realizar::bench {

struct ServeTarget {
  std::string name;
  std::string url;   // normalized (normalize_base_url)
  std::string role;  // "subject" or "baseline"
};

// "NAME=URL", or a bare URL named after its host and port. Throws realizar::Error for an empty
// name or a URL that is not http(s).
ServeTarget parse_serve_target(std::string_view text, std::string_view role);

struct ServeOptions {
  ServingWorkload workload;
  Api api = Api::Completions;
  std::string model;  // empty: the first model each server lists
  bool ignore_eos = true;
  int warmup_requests = 1;
  int repetitions = 1;
  double timeout_seconds = 600;
  std::optional<std::filesystem::path> tokenizer;  // tokenizer.json or a GGUF file
};

// The serve document (report_json.h) around `servers` (serving_server_json entries): the
// environment, the workload and the method of `options`. The in-process serving bench builds
// its document with it too.
nlohmann::json serve_document(const ServeOptions& options, nlohmann::json servers);

// Runs the workload `repetitions` times against every target and returns the serve document
// (report_json.h, docs/bench.schema.json). Throws realizar::Error when a server fails its check,
// naming the server and what went wrong; failures of measured requests are recorded, not thrown.
nlohmann::json run_serve_benchmark(const std::vector<ServeTarget>& targets, const ServeOptions& options);

}  // namespace realizar::bench
