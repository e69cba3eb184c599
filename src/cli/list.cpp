// apr list [--json]: the models in the cache (no network).
#include <fmt/format.h>

#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "realizar/hub.h"
#include "util/progress.h"

namespace realizar::cli {
namespace {

using nlohmann::json;

// The first file's name, and how many parts there are for a split model.
std::string file_column(const hub::ModelManifest& m) {
  if (m.files.size() == 1) return m.files[0].name;
  return fmt::format("{} (+{} parts)", m.files[0].name, m.files.size() - 1);
}

json to_json(const hub::ModelManifest& m) {
  json files = json::array();
  for (const hub::ModelFile& f : m.files) {
    files.push_back({{"name", f.name}, {"size", f.size}, {"sha256", f.sha256}});
  }
  return {{"reference", m.reference}, {"repo", m.repo},
          {"quant", m.quant},         {"revision", m.revision},
          {"commit", m.commit},       {"architecture", m.architecture},
          {"size", m.size()},         {"path", m.model_path().string()},
          {"files", files},           {"pulled_at", m.pulled_at}};
}

int run_list(bool as_json) {
  std::vector<std::string> problems;
  const std::vector<hub::ModelManifest> models = hub::list_cached_models(problems);
  for (const std::string& problem : problems) std::fprintf(stderr, "apr: %s\n", problem.c_str());
  if (as_json) {
    json all = json::array();
    for (const hub::ModelManifest& m : models) all.push_back(to_json(m));
    fmt::print("{}\n", all.dump(1));
    return 0;
  }
  constexpr const char* row = "{:<48} {:<48} {:>9} {:<8} {}\n";
  fmt::print(row, "REFERENCE", "FILE", "SIZE", "QUANT", "ARCHITECTURE");
  for (const hub::ModelManifest& m : models) {
    fmt::print(row, m.reference, file_column(m),
               Progress::format_amount(m.size(), Progress::Unit::Bytes), m.quant,
               m.architecture.empty() ? "?" : m.architecture);
  }
  return 0;
}

CommandRunner setup(CLI::App& app) {
  auto as_json = std::make_shared<bool>(false);
  app.add_flag("--json", *as_json, "print one JSON array instead of a table");
  return [as_json] { return run_list(*as_json); };
}

const bool registered =
    register_command({"list", "list the models in the cache (apr pull adds them)", setup});

}  // namespace
}  // namespace realizar::cli
