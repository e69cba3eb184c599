#include "cli/options.h"

#include <cstdio>
#include <filesystem>
#include <random>
#include <thread>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_features.h"
#include "cli/command.h"

namespace realizar::cli {

void add_device_options(CLI::App& app, DeviceArgs& args) {
  app.add_option("--device", args.device, "auto, cpu, cuda or reference")
      ->check(CLI::IsMember({"auto", "cpu", "cuda", "reference"}))
      ->capture_default_str();
  app.add_option("-t,--threads", args.threads, "CPU threads (0: all cores)")
      ->check(kNonNegative)
      ->capture_default_str();
}

void add_context_option(CLI::App& app, int64_t& context) {
  app.add_option("--ctx", context, "tokens one sequence holds, prompt and output (0: min(model's, 4096))")
      ->check(kNonNegative)
      ->capture_default_str();
}

void add_sampling_options(CLI::App& app, SamplingArgs& args) {
  SamplingParams& s = args.params;
  app.add_option("--temp,--temperature", s.temperature, "temperature (0: greedy)")
      ->check(kNonNegative)
      ->capture_default_str();
  app.add_option("--top-k", s.top_k, "keep the K most likely tokens (0: off)")
      ->check(kNonNegative)
      ->capture_default_str();
  app.add_option("--top-p", s.top_p, "nucleus sampling threshold (1: off)")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--min-p", s.min_p, "drop tokens below M x the top probability (0: off)")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--repeat-penalty", s.repeat_penalty, "penalty for repeated tokens (1: off)")
      ->check(kPositive)
      ->capture_default_str();
  app.add_option("--presence-penalty", s.presence_penalty, "presence penalty (0: off)")->capture_default_str();
  app.add_option("--frequency-penalty", s.frequency_penalty, "frequency penalty (0: off)")->capture_default_str();
  app.add_option("--seed", args.seed, "random seed (default: random)");
}

SamplingParams sampling_params(const SamplingArgs& args) {
  SamplingParams params = args.params;
  params.seed = args.seed ? *args.seed : std::random_device{}();
  return params;
}

EngineOptions engine_options(const DeviceArgs& device, int64_t context) {
  EngineOptions options;
  options.device = parse_device(device.device);
  options.context_length = context;
  options.threads = device.threads;
  return options;
}

void print_engine_line(const Engine& engine, const std::string& model) {
  // The CPU backend names its kernel set (chosen at run time) and runs one thread per physical core
  // by default.
  const bool cpu = engine.device_name() == "cpu";
  const std::string device = cpu ? fmt::format("cpu ({})", cpu_kernel_set_name()) : std::string(engine.device_name());
  const int threads = engine.options().threads > 0 ? engine.options().threads
                      : cpu                        ? cpu::physical_core_count()
                                                   : static_cast<int>(std::thread::hardware_concurrency());
  const std::string threads_text = engine.device_name() == "cuda" ? "" : fmt::format(", {} threads", threads);
  std::fprintf(stderr, "apr: %s (%s) on %s%s, context %lld tokens\n",
               std::filesystem::path(model).filename().c_str(), engine.model().config.architecture_name.c_str(),
               device.c_str(), threads_text.c_str(), static_cast<long long>(engine.context_length()));
}

}  // namespace realizar::cli
