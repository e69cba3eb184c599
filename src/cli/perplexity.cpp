// apr perplexity MODEL FILE [--ctx 512] [--chunks N] [--device D] [--threads T]
//
// Prints the running perplexity after each window as llama-perplexity does ("[1]12.3456,[2]...")
// and then "Final estimate: PPL = X +/- SE" (method: src/engine/perplexity.h).
#include <chrono>
#include <cstdio>
#include <memory>

#include "cli/command.h"
#include "cli/options.h"
#include "cli/text_file.h"
#include "engine/backend_factory.h"
#include "engine/perplexity.h"
#include "kv/kv_manager.h"
#include "realizar/engine.h"
#include "realizar/error.h"
#include "realizar/hub.h"

namespace realizar::cli {
namespace {

struct PerplexityArgs {
  std::string model;
  std::string text_file;
  int64_t context = 512;
  int64_t chunks = 0;
  DeviceArgs device;
};

int run_perplexity(const PerplexityArgs& args) {
  const std::string text = read_text_file(args.text_file);
  const std::unique_ptr<Model> model = Model::load(hub::resolve_model(args.model));
  check_perplexity_context(args.context, model->config.context_length);
  const std::vector<int32_t> tokens = perplexity_tokens(model->tokenizer, text);

  BackendOptions backend_options;
  backend_options.cache_slots = (args.context + kKvBlockSize - 1) / kKvBlockSize * kKvBlockSize;
  backend_options.max_sequence_length = args.context;
  backend_options.threads = args.device.threads;
  backend_options.tensor_parallel = args.device.tensor_parallel;
  const std::unique_ptr<Backend> backend = make_backend(parse_device(args.device.device), *model, backend_options);
  std::fprintf(stderr, "apr: %s on %s; %zu tokens, windows of %lld\n",
               model->config.architecture_name.c_str(), std::string(backend->name()).c_str(),
               tokens.size(), static_cast<long long>(args.context));

  PerplexityOptions options;
  options.context = args.context;
  options.max_chunks = args.chunks;
  options.bos_token = added_bos(model->tokenizer);
  const auto start = std::chrono::steady_clock::now();
  const PerplexityResult result =
      compute_perplexity(*backend, tokens, options, [](int64_t chunk, double running) {
        std::printf("[%lld]%.4f,", static_cast<long long>(chunk), running);
        std::fflush(stdout);
      });
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("\nFinal estimate: PPL = %.4f +/- %.5f\n", result.perplexity,
              result.standard_error);
  std::fprintf(stderr, "apr: %lld windows, %lld tokens scored, %.1f s (%.1f tok/s evaluated)\n",
               static_cast<long long>(result.chunks),
               static_cast<long long>(result.scored_tokens), seconds,
               result.chunks * args.context / seconds);
  return 0;
}

const bool registered = register_command({
    "perplexity", "measure a model's perplexity over a text file (llama-perplexity's method)",
    [](CLI::App& app) -> CommandRunner {
      auto args = std::make_shared<PerplexityArgs>();
      app.add_option("model", args->model, kModelHelp)->required();
      app.add_option("file", args->text_file, "text file to score")->required();
      app.add_option("-c,--ctx", args->context, "tokens per window")->check(kPositive)->capture_default_str();
      app.add_option("--chunks", args->chunks, "windows to score (0: all)")
          ->check(kNonNegative)->capture_default_str();
      add_device_options(app, args->device);
      return [args] { return run_perplexity(*args); };
    }});

}  // namespace
}  // namespace realizar::cli
