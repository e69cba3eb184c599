// `apr bench MODEL` from start to end: load the model, build the backend with room for every
// test, measure the memory bandwidth, run the tests (bench.h) and assemble the model document
// (report_json.h) with the environment and any imported llama-bench baselines.
#pragma once

#include <filesystem>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/bench.h"
#include "realizar/engine.h"

namespace realizar::bench {

struct ModelBenchConfig {
  std::filesystem::path model;
  Device device = Device::Auto;
  int threads = 0;  // CPU threads; 0: all cores
  BenchOptions options;
  std::vector<nlohmann::json> baselines;  // import_llama_bench results
  nlohmann::json synth = nullptr;         // {preset, type, tokenizer} when --synth made the model
};

nlohmann::json run_model_benchmark(const ModelBenchConfig& config);

}  // namespace realizar::bench
