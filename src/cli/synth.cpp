// apr synth PRESET -o OUT.gguf [--type q4_k_m] [--tokenizer tokenizer.json] [--seed N]
#include <fmt/format.h>

#include <memory>

#include "cli/command.h"
#include "cli/options.h"
#include "realizar/convert.h"
#include "util/thread_pool.h"

namespace realizar::cli {
namespace {

struct SynthArgs {
  std::string preset;
  std::string out;
  std::string type = "q4_k_m";
  std::string tokenizer;
  uint64_t seed = 0;
  int threads = 0;
};

CommandRunner setup(CLI::App& app) {
  auto args = std::make_shared<SynthArgs>();
  std::string presets;
  for (const SynthPreset& p : synth_presets()) presets += (presets.empty() ? "" : ", ") + p.name;
  app.add_option("preset", args->preset, "model shape: " + presets)->required();
  app.add_option("-o,--output", args->out, "GGUF file to write")->required();
  app.add_option("--type", args->type, "f32, f16, bf16, q8_0, q4_0, q4_k_m, q5_k_m, q6_k")->capture_default_str();
  app.add_option("--tokenizer", args->tokenizer,
                 "Hugging Face tokenizer.json to embed, and tokenizer_config.json beside it "
                 "(default: a 256-byte byte-level vocabulary)");
  app.add_option("--seed", args->seed, "random seed (the output depends only on it)")->capture_default_str();
  add_threads_option(app, args->threads);
  return [args] {
    const SynthPreset& preset = synth_preset(args->preset);
    SynthOptions options;
    options.scheme = quant_scheme_from_name(args->type);
    if (!args->tokenizer.empty()) options.tokenizer_json = args->tokenizer;
    options.seed = args->seed;
    ThreadPool pool(args->threads);
    synth_model(preset, args->out, options, pool);
    fmt::print("wrote {} ({}, {})\n", args->out, preset.name, quant_scheme_name(options.scheme));
    return 0;
  };
}

const bool registered = register_command(
    {"synth", "write a random-weight model of a real architecture (for tests and benchmarks)",
     setup});

}  // namespace
}  // namespace realizar::cli
