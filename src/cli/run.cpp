// apr run MODEL -p PROMPT [-n N] [sampling options] [--chat [--system S]] [--device D] [--ctx N]
#include <cstdio>
#include <memory>
#include <random>

#include <fmt/format.h>

#include "backend/cpu/cpu_backend.h"
#include "cli/command.h"
#include "cli/prompt.h"
#include "realizar/engine.h"
#include "realizar/error.h"

namespace realizar::cli {
namespace {

struct RunArgs {
  std::string model;
  std::string prompt;
  ChatArgs chat;
  GenerationOptions generation;
  std::optional<uint64_t> seed;
  std::string device = "auto";
  int64_t context = 0;
  int threads = 0;
};

int run_generation(RunArgs& args) {
  if (args.prompt.empty()) fail("the prompt is empty (give one with -p)");
  EngineOptions options;
  options.device = parse_device(args.device);
  options.context_length = args.context;
  options.threads = args.threads;
  Engine engine(args.model, options);
  // "on cpu (avx512-vnni)": the CPU backend's kernel set is chosen at run time.
  const std::string device = engine.device_name() == "cpu"
                                 ? fmt::format("cpu ({})", cpu_kernel_set_name())
                                 : std::string(engine.device_name());
  std::fprintf(stderr, "apr: %s on %s, context %lld tokens\n",
               engine.model().config.architecture_name.c_str(), device.c_str(),
               static_cast<long long>(engine.context_length()));

  args.generation.sampling.seed = args.seed ? *args.seed : std::random_device{}();
  const std::vector<int32_t> prompt = tokenize_prompt(engine.tokenizer(), args.prompt, args.chat);
  const auto print = [](std::string_view text) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
  };
  GenerationStats stats;
  try {
    stats = engine.generate(prompt, args.generation, print);
  } catch (const RequestError& e) {
    if (e.code() != RequestError::Code::ContextLengthExceeded) throw;
    fail("{}: raise --ctx", e.what());
  }
  std::fputc('\n', stdout);
  std::fflush(stdout);  // the text's line ends before the statistics on stderr, also through a pipe
  std::fprintf(stderr,
               "apr: prompt %lld tokens, TTFT %.1f ms (%.1f tok/s); generated %lld tokens in "
               "%.2f s (%.2f tok/s); finished: %s\n",
               static_cast<long long>(stats.prompt_tokens), stats.prompt_seconds * 1e3,
               stats.prompt_tokens / stats.prompt_seconds,
               static_cast<long long>(stats.generated_tokens), stats.generation_seconds,
               stats.generated_tokens > 1
                   ? (stats.generated_tokens - 1) / std::max(stats.generation_seconds, 1e-9)
                   : 0.0,
               stats.finish_reason.c_str());
  return 0;
}

const bool registered = register_command({
    "run", "Generate text from a prompt, streaming it to standard output",
    [](CLI::App& app) -> CommandRunner {
      auto args = std::make_shared<RunArgs>();
      SamplingParams& s = args->generation.sampling;
      app.add_option("model", args->model, "GGUF model file")->required();
      app.add_option("-p,--prompt", args->prompt, "the prompt")->required();
      app.add_option("-n,--max-tokens", args->generation.max_tokens, "tokens to generate")
          ->check(kPositive);
      app.add_option("--temp", s.temperature, "temperature (0: greedy)")
          ->check(kNonNegative);
      app.add_option("--top-k", s.top_k, "keep the K most likely tokens (0: off)")
          ->check(kNonNegative);
      app.add_option("--top-p", s.top_p, "nucleus sampling threshold (1: off)")
          ->check(CLI::Range(0.0, 1.0));
      app.add_option("--min-p", s.min_p, "drop tokens below M x the top probability (0: off)")
          ->check(CLI::Range(0.0, 1.0));
      app.add_option("--repeat-penalty", s.repeat_penalty, "penalty for repeated tokens (1: off)")
          ->check(kPositive);
      app.add_option("--presence-penalty", s.presence_penalty, "presence penalty");
      app.add_option("--frequency-penalty", s.frequency_penalty, "frequency penalty");
      app.add_option("--seed", args->seed, "random seed (default: random)");
      app.add_option("--stop", args->generation.stop, "stop before this string (repeatable)");
      app.add_flag("--ignore-eos", args->generation.ignore_eos, "keep generating after EOS");
      add_chat_options(app, args->chat);
      app.add_option("--device", args->device, "auto, cpu, cuda or reference")
          ->check(CLI::IsMember({"auto", "cpu", "cuda", "reference"}));
      app.add_option("--ctx", args->context, "context length in tokens (default: min(model, 4096))")
          ->check(kPositive);
      app.add_option("-t,--threads", args->threads, "CPU threads (0: all cores)")
          ->check(kNonNegative);
      return [args] { return run_generation(*args); };
    }});

}  // namespace
}  // namespace realizar::cli
