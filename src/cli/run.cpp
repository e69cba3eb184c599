// apr run MODEL -p PROMPT [-n N] [sampling options] [--chat [--system S]] [--device D] [--ctx N] [-t N] [-tp N]
#include <cstdio>
#include <memory>

#include <fmt/format.h>

#include "cli/command.h"
#include "cli/options.h"
#include "cli/prompt.h"
#include "realizar/engine.h"
#include "realizar/error.h"
#include "realizar/hub.h"

namespace realizar::cli {
namespace {

struct RunArgs {
  std::string model;
  std::string prompt;
  ChatArgs chat;
  GenerationOptions generation;
  SamplingArgs sampling;
  DeviceArgs device;
  int64_t context = 0;
};

int run_generation(RunArgs& args) {
  if (args.prompt.empty()) fail("the prompt is empty (give one with -p)");
  const std::filesystem::path model = hub::resolve_model(args.model);
  Engine engine(model, engine_options(args.device, args.context));
  print_engine_line(engine, model.string());

  args.generation.sampling = sampling_params(args.sampling);
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
    "run", "generate text from a prompt, streaming it to standard output",
    [](CLI::App& app) -> CommandRunner {
      auto args = std::make_shared<RunArgs>();
      app.add_option("model", args->model, kModelHelp)->required();
      app.add_option("-p,--prompt", args->prompt, "the prompt")->required();
      app.add_option("-n,--max-tokens", args->generation.max_tokens, "tokens to generate")
          ->check(kPositive)
          ->capture_default_str();
      add_sampling_options(app, args->sampling);
      app.add_option("--stop", args->generation.stop, "stop before this string (repeatable)");
      app.add_flag("--ignore-eos", args->generation.ignore_eos, "keep generating after EOS");
      add_chat_options(app, args->chat);
      add_device_options(app, args->device);
      add_context_option(app, args->context);
      return [args] { return run_generation(*args); };
    }});

}  // namespace
}  // namespace realizar::cli
