// apr bench MODEL [--device D] [-p 512] [-n 128] [-r 5] [--parallel N] [--threads T] [--json FILE]
#include <fstream>
#include <iostream>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "bench/bench.h"
#include "cli/command.h"
#include "engine/backend_factory.h"
#include "realizar/engine.h"
#include "realizar/error.h"

namespace realizar::cli {
namespace {

struct BenchArgs {
  std::string model;
  std::string device = "auto";
  bench::BenchOptions options;
  int threads = 0;
  std::string json_path;
};

uint64_t parameter_count(const gguf::File& file) {
  uint64_t n = 0;
  for (const auto& t : file.tensors()) n += t.n_elements;
  return n;
}

int run_bench(const BenchArgs& args) {
  std::unique_ptr<Model> model = Model::load(args.model);
  // Room for every sequence's prompt and generated tokens, rounded up per sequence to 64 tokens
  // (a multiple of any backend's cache block: the blocks of one sequence are not shared).
  const int64_t per_sequence = (args.options.prompt_tokens + args.options.generate_tokens + 8 + 63) / 64 * 64;
  const int64_t cache_tokens = static_cast<int64_t>(args.options.parallel) * per_sequence;
  BackendOptions backend_options;
  backend_options.cache_slots = cache_tokens;
  backend_options.max_sequence_length = per_sequence;
  backend_options.threads = args.threads;
  std::unique_ptr<Backend> backend = make_backend(parse_device(args.device), *model, backend_options);
  const uint64_t bytes_per_token = weight_bytes_per_token(model->weights);
  const double bandwidth = measure_copy_bandwidth(*backend, args.threads);

  const std::vector<bench::Measurement> results = bench::run_benchmark(*backend, args.options);

  std::cout << fmt::format("model: {} ({}, {:.2f} GiB, {:.2f} B parameters)\n", args.model,
                           model->config.architecture_name,
                           static_cast<double>(model->file.file_size()) / (1 << 30),
                           static_cast<double>(parameter_count(model->file)) / 1e9);
  std::cout << fmt::format("backend: {}; weights read per token: {:.1f} MB; copy bandwidth: "
                           "{:.1f} GB/s\n\n",
                           backend->name(), bytes_per_token / 1e6, bandwidth / 1e9);
  std::cout << "| test | t/s | decode bandwidth / copy bandwidth |\n|---|---|---|\n";
  nlohmann::json json_results = nlohmann::json::array();
  for (const bench::Measurement& m : results) {
    const double tps = m.mean_tokens_per_second();
    // Each decode step reads the weights once, whatever the number of sequences in the batch.
    const double steps_per_second =
        tps / (m.test.rfind("tg", 0) == 0 ? args.options.parallel : 1);
    const bool decode = m.test.rfind("tg", 0) == 0;
    const double fraction = decode ? steps_per_second * bytes_per_token / bandwidth : 0.0;
    std::cout << fmt::format("| {} | {:.2f} ± {:.2f} | {} |\n", m.test, tps,
                             m.stdev_tokens_per_second(),
                             decode ? fmt::format("{:.1f}%", 100 * fraction) : "");
    json_results.push_back({{"test", m.test},
                            {"tokens", m.tokens},
                            {"seconds", m.seconds},
                            {"tokens_per_second_mean", tps},
                            {"tokens_per_second_stdev", m.stdev_tokens_per_second()},
                            {"bandwidth_fraction", decode ? fraction : 0.0}});
  }
  if (!args.json_path.empty()) {
    nlohmann::json doc = {{"model", args.model},
                          {"architecture", model->config.architecture_name},
                          {"backend", std::string(backend->name())},
                          {"threads", args.threads},
                          {"weight_bytes_per_token", bytes_per_token},
                          {"copy_bandwidth_bytes_per_second", bandwidth},
                          {"parallel", args.options.parallel},
                          {"results", json_results}};
    std::ofstream out(args.json_path);
    out << doc.dump(2) << "\n";
    if (!out) fail("cannot write {}", args.json_path);
  }
  return 0;
}

const bool registered = register_command({
    "bench", "Measure prefill (pp) and decode (tg) throughput of a model",
    [](CLI::App& app) -> CommandRunner {
      auto args = std::make_shared<BenchArgs>();
      app.add_option("model", args->model, "GGUF model file")->required();
      app.add_option("--device", args->device, "auto, cpu, cuda or reference")
          ->check(CLI::IsMember({"auto", "cpu", "cuda", "reference"}));
      app.add_option("-p,--prompt-tokens", args->options.prompt_tokens, "prefill test length")
          ->check(kNonNegative);
      app.add_option("-n,--generate-tokens", args->options.generate_tokens,
                     "decode test length")->check(kNonNegative);
      app.add_option("-r,--repetitions", args->options.repetitions, "repetitions of each test")
          ->check(kPositive);
      app.add_option("--parallel", args->options.parallel,
                     "sequences decoded at once, each after its own prompt")
          ->check(kPositive);
      app.add_option("-t,--threads", args->threads, "CPU threads (0: all cores)")
          ->check(kNonNegative);
      app.add_option("--json", args->json_path, "also write the results to this JSON file");
      return [args] { return run_bench(*args); };
    }});

}  // namespace
}  // namespace realizar::cli
