// Options shared by the commands that run a model (run, chat, serve, bench, perplexity): declared
// here once so that each is spelled, described and checked the same way in every command.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "realizar/engine.h"
#include "realizar/sampling.h"

namespace realizar::cli {

struct DeviceArgs {
  std::string device = "auto";
  int threads = 0;
  int tensor_parallel = 1;
};

// -t/--threads N (0: one per core: the CPU backend counts physical cores, other work usable CPUs).
void add_threads_option(CLI::App& app, int& threads);

// --device auto|cpu|cuda|reference, -t/--threads N, --tensor-parallel/-tp N (GPUs to split the
// model over; checked against the model when the engine starts: docs/tensor-parallel.md).
void add_device_options(CLI::App& app, DeviceArgs& args);

// argv without the program name, with the multi-letter short option CLI11 cannot declare spelled
// out where it stands as an option of the subcommand named first: -tp N, -tp=N and -tpN (vLLM's
// spelling) become --tensor-parallel N / --tensor-parallel=N. The value of an option (-p -tp)
// and arguments after "--" stay as they are.
std::vector<std::string> spell_out_short_aliases(CLI::App& app, int argc, const char* const* argv);

// --ctx N: tokens one sequence holds, prompt and output (0: min(model's, 4096)).
void add_context_option(CLI::App& app, int64_t& context);

struct SamplingArgs {
  SamplingParams params;
  std::optional<uint64_t> seed;
};

// --temp (alias --temperature), --top-k, --top-p, --min-p, --repeat-penalty, --presence-penalty,
// --frequency-penalty and, with `seed`, --seed; defaults are SamplingParams's (llama.cpp's).
void add_sampling_options(CLI::App& app, SamplingArgs& args, bool seed = true);

// The parameters with the seed filled in: --seed, else a random one.
SamplingParams sampling_params(const SamplingArgs& args);

// EngineOptions for one interactive sequence from the shared options.
EngineOptions engine_options(const DeviceArgs& device, int64_t context);

// The line every command that runs a model prints first on stderr: which model, on which device,
// with how many threads and how long a context.
void print_engine_line(const Engine& engine, const std::string& model);

}  // namespace realizar::cli
