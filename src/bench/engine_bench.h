// `apr bench engine`: the serving workload (workload.h) driven in-process through Engine::submit,
// as `apr serve` would drive it but without HTTP: each planned request becomes a Request of random
// token ids of its prompt length that generates exactly its output length (ignore_eos), its
// events timed as they arrive. The result is a serve document (report_json.h) with one server,
// the engine, so it renders and compares like `apr bench serve`'s.
#pragma once

#include <filesystem>

#include <nlohmann/json.hpp>

#include "bench/serve_bench.h"
#include "realizar/engine.h"

namespace realizar::bench {

struct EngineBenchConfig {
  std::filesystem::path model;
  EngineOptions engine;         // the engine as a server would run it (--parallel, --ctx, ...)
  ServeOptions options;         // workload, warm-up requests, repetitions, timeout
  SamplingParams sampling;      // of every request
};

// Throws realizar::Error for a bad model or engine options, and when a planned request does not
// fit the context (the plan's longest prompt plus output must).
nlohmann::json run_engine_benchmark(const EngineBenchConfig& config);

}  // namespace realizar::bench
