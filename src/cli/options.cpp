#include "cli/options.h"

#include <cstdio>
#include <filesystem>
#include <random>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_features.h"
#include "cli/command.h"
#include "util/counted.h"
#include "util/cpu_count.h"

namespace realizar::cli {

void add_threads_option(CLI::App& app, int& threads) {
  app.add_option("-t,--threads", threads, "CPU threads (0: one per core)")
      ->check(kNonNegative)
      ->capture_default_str();
}

void add_device_options(CLI::App& app, DeviceArgs& args) {
  app.add_option("--device", args.device, "auto, cpu, cuda or reference")
      ->check(CLI::IsMember({"auto", "cpu", "cuda", "reference"}))
      ->capture_default_str();
  add_threads_option(app, args.threads);
  app.add_option("--tensor-parallel", args.tensor_parallel,
                 "GPUs to split the model over, tensor parallelism (also -tp N)")
      ->check(kPositive)
      ->capture_default_str();
}

namespace {

// Whether `arg` is an option of `command` whose value is the next argument ("-p", "--prompt";
// not "--prompt=x", a flag or an unknown name).
bool takes_next_argument(const CLI::App& command, std::string_view arg) {
  const bool long_name = arg.starts_with("--") && arg.find('=') == std::string_view::npos;
  const bool short_name = arg.size() == 2 && arg[0] == '-' && arg[1] != '-';
  if (!long_name && !short_name) return false;
  const CLI::Option* option = command.get_option_no_throw(std::string(arg));
  return option != nullptr && option->get_items_expected_min() > 0;
}

// `arg` (-tp, -tp=N or -tpN) spelled out, or nullopt when it is not the alias.
std::optional<std::string> spelled_out(std::string_view arg) {
  constexpr std::string_view kShort = "-tp", kLong = "--tensor-parallel";
  if (!arg.starts_with(kShort)) return std::nullopt;
  const std::string_view rest = arg.substr(kShort.size());
  if (rest.empty()) return std::string(kLong);
  if (rest.starts_with("=")) return std::string(kLong) + std::string(rest);
  if (rest.find_first_not_of("0123456789") == std::string_view::npos) {
    return std::string(kLong) + "=" + std::string(rest);
  }
  return std::nullopt;  // another short option that starts with -t (-tpx: CLI11 reports it)
}

}  // namespace

std::vector<std::string> spell_out_short_aliases(CLI::App& app, int argc, const char* const* argv) {
  std::vector<std::string> args;
  CLI::App* command = nullptr;  // the subcommand, once named
  bool ended = false;           // after "--": positional arguments only
  bool value_next = false;      // the argument is the value of the option before it
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    const std::optional<std::string> alias = spelled_out(arg);
    const bool verbatim = !command || ended || value_next || !alias;
    args.push_back(verbatim ? std::string(arg) : *alias);
    if (!command) {
      const auto named = app.get_subcommands([&](CLI::App* sub) { return sub->check_name(std::string(arg)); });
      if (!named.empty()) command = named.front();
    } else if (value_next) {
      value_next = false;
    } else if (arg == "--") {
      ended = true;
    } else if (!ended) {
      value_next = takes_next_argument(*command, arg);
    }
  }
  return args;
}

void add_context_option(CLI::App& app, int64_t& context) {
  app.add_option("--ctx", context, "tokens one sequence holds, prompt and output (0: min(model's, 4096))")
      ->check(kNonNegative)
      ->capture_default_str();
}

void add_sampling_options(CLI::App& app, SamplingArgs& args, bool seed) {
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
  if (seed) app.add_option("--seed", args.seed, "random seed (default: random)");
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
  options.tensor_parallel = device.tensor_parallel;
  return options;
}

void print_engine_line(const Engine& engine, const std::string& model) {
  // The CPU backend names its kernel set (chosen at run time) and runs one thread per physical core
  // by default.
  const bool cpu = engine.device_name() == "cpu";
  const std::string device = engine.device_label();
  const int threads = engine.options().threads > 0 ? engine.options().threads
                      : cpu                        ? cpu::physical_core_count()
                                                   : usable_cpu_count();
  const std::string threads_text = engine.device_name() == "cuda" ? "" : ", " + counted(threads, "thread");
  std::fprintf(stderr, "apr: %s (%s) on %s%s, context %lld tokens\n",
               std::filesystem::path(model).filename().c_str(), engine.model().config.architecture_name.c_str(),
               device.c_str(), threads_text.c_str(), static_cast<long long>(engine.context_length()));
}

}  // namespace realizar::cli
