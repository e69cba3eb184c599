// apr rm MODEL...: delete models from the cache.
#include <fmt/format.h>

#include <cstdio>
#include <memory>

#include "cli/command.h"
#include "realizar/hub.h"

namespace realizar::cli {
namespace {

// Removes each reference; one that is not a reference or not cached is reported and makes the
// exit code 1, the others are still removed.
int run_rm(const std::vector<std::string>& models) {
  int status = 0;
  for (const std::string& model : models) {
    const auto reference = hub::parse_model_reference(model);
    if (!reference) {
      std::fprintf(
          stderr,
          "apr: error: %s: not a model reference (OWNER/REPO[:QUANT][@REVISION] or an alias)\n",
          model.c_str());
      status = 1;
    } else if (hub::remove_cached_model(*reference)) {
      fmt::print("removed {}\n", reference->to_string());
    } else {
      std::fprintf(stderr, "apr: error: %s is not in the cache (apr list shows what is)\n",
                   reference->to_string().c_str());
      status = 1;
    }
  }
  return status;
}

CommandRunner setup(CLI::App& app) {
  auto models = std::make_shared<std::vector<std::string>>();
  app.add_option("model", *models, "model references or aliases, as apr pull takes them")
      ->required();
  return [models] { return run_rm(*models); };
}

const bool registered = register_command(
    {"rm", "delete models from the cache (files, unfinished downloads and manifest)", setup});

}  // namespace
}  // namespace realizar::cli
