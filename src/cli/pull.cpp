// apr pull MODEL [-o DIR]: fetch a model from the Hugging Face hub into the cache (or DIR).
#include <fmt/format.h>

#include <memory>

#include "cli/command.h"
#include "realizar/error.h"
#include "realizar/hub.h"

namespace realizar::cli {
namespace {

struct PullArgs {
  std::string model;
  std::string output_dir;
};

std::string alias_list() {
  std::string text;
  for (const hub::ModelAlias& alias : hub::model_aliases()) {
    text += fmt::format("\n  {:<20} {}", alias.name, alias.reference);
  }
  return text;
}

int run_pull(const PullArgs& args) {
  const auto reference = hub::parse_model_reference(args.model);
  if (!reference) {
    fail(
        "{}: not a model reference (OWNER/REPO[:QUANT][@REVISION], or an alias: apr pull --help "
        "lists them)",
        args.model);
  }
  hub::PullOptions options;
  if (!args.output_dir.empty()) options.output_dir = args.output_dir;
  const hub::ModelManifest manifest = hub::pull_model(*reference, options);
  // The path alone on standard output, for `apr run "$(apr pull REF)"`.
  fmt::print("{}\n", manifest.model_path().string());
  return 0;
}

CommandRunner setup(CLI::App& app) {
  auto args = std::make_shared<PullArgs>();
  app.add_option("model", args->model,
                 "OWNER/REPO[:QUANT][@REVISION] (QUANT default Q4_K_M, REVISION default main) or "
                 "an alias")
      ->required();
  app.add_option("-o,--output-dir", args->output_dir,
                 "write the file(s) here instead of the cache ($REALIZAR_HOME/models, default "
                 "~/.cache/realizar/models)");
  app.footer("environment: HF_TOKEN (private and gated repositories), HF_ENDPOINT (default " +
             std::string(hub::kDefaultEndpoint) +
             "), HF_HUB_DOWNLOAD_TIMEOUT (seconds without data before a retry, default 10)\n"
             "aliases:" +
             alias_list());
  return [args] { return run_pull(*args); };
}

const bool registered = register_command(
    {"pull", "download a GGUF model from the Hugging Face hub into the model cache", setup});

}  // namespace
}  // namespace realizar::cli
