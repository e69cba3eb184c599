// Cache directories and manifests (see cache.h).
#include "hub/cache.h"

#include <fmt/format.h>

#include <chrono>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "hub/text.h"
#include "realizar/error.h"
#include "util/paths.h"

namespace realizar::hub {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr int kManifestFormat = 1;
constexpr const char* kManifestName = "manifest.json";

std::string escape_revision(std::string_view revision) {
  std::string out;
  for (char c : revision) out += c == '/' ? std::string("%2F") : std::string(1, c);
  return out;
}

json to_json(const ModelManifest& m) {
  json files = json::array();
  for (const ModelFile& f : m.files) {
    files.push_back({{"name", f.name},
                     {"path_in_repo", f.path_in_repo},
                     {"size", f.size},
                     {"sha256", f.sha256}});
  }
  return {{"format", kManifestFormat}, {"reference", m.reference}, {"repo", m.repo},
          {"quant", m.quant},          {"revision", m.revision},   {"commit", m.commit},
          {"endpoint", m.endpoint},    {"files", files},           {"architecture", m.architecture},
          {"pulled_at", m.pulled_at}};
}

// The string field `key` of `object`; throws naming the manifest when absent or not a string.
std::string string_field(const json& object, const char* key, const fs::path& path) {
  const auto found = object.find(key);
  if (found == object.end() || !found->is_string()) {
    fail("{}: not a manifest: \"{}\" is missing or not a string", path.string(), key);
  }
  return found->get<std::string>();
}

ModelManifest from_json(const json& j, const fs::path& path) {
  if (!j.is_object()) fail("{}: not a manifest: not a JSON object", path.string());
  if (!j.contains("format") || j["format"] != kManifestFormat) {
    fail("{}: not a manifest of format {}", path.string(), kManifestFormat);
  }
  ModelManifest m;
  m.reference = string_field(j, "reference", path);
  m.repo = string_field(j, "repo", path);
  m.quant = string_field(j, "quant", path);
  m.revision = string_field(j, "revision", path);
  m.commit = string_field(j, "commit", path);
  m.endpoint = string_field(j, "endpoint", path);
  m.architecture = string_field(j, "architecture", path);
  m.pulled_at = string_field(j, "pulled_at", path);
  if (!j.contains("files") || !j["files"].is_array() || j["files"].empty()) {
    fail("{}: not a manifest: \"files\" is missing or empty", path.string());
  }
  for (const json& f : j["files"]) {
    if (!f.is_object() || !f.contains("size") || !f["size"].is_number_unsigned()) {
      fail("{}: not a manifest: a file has no size", path.string());
    }
    ModelFile file{string_field(f, "name", path), string_field(f, "path_in_repo", path),
                   f["size"].get<uint64_t>(), string_field(f, "sha256", path)};
    if (file.name.empty() || file.name.find('/') != std::string::npos || file.name == "." ||
        file.name == "..") {
      fail("{}: not a manifest: bad file name {}", path.string(), json(file.name).dump());
    }
    m.files.push_back(std::move(file));
  }
  m.directory = path.parent_path();
  return m;
}

}  // namespace

fs::path models_dir() { return realizar_home() / "models"; }

fs::path model_dir(const ModelReference& reference) {
  const size_t slash = reference.repo.find('/');
  std::string leaf = ascii_upper(reference.quant);
  if (reference.revision != kDefaultRevision)
    leaf += fmt::format("@{}", escape_revision(reference.revision));
  return models_dir() / ascii_lower(reference.repo.substr(0, slash)) /
         ascii_lower(reference.repo.substr(slash + 1)) / leaf;
}

std::optional<ModelManifest> read_manifest(const fs::path& dir) {
  const fs::path path = dir / kManifestName;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (!fs::exists(path)) return std::nullopt;
    fail("{}: cannot read", path.string());
  }
  std::ostringstream text;
  text << in.rdbuf();
  const json j = json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) fail("{}: not a manifest: malformed JSON", path.string());
  return from_json(j, path);
}

void write_manifest(const ModelManifest& manifest) {
  const fs::path path = manifest.directory / kManifestName;
  const fs::path temporary = manifest.directory / (std::string(kManifestName) + ".tmp");
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    out << to_json(manifest).dump(1) << "\n";
    out.flush();
    if (!out) fail("{}: cannot write", temporary.string());
  }
  std::error_code error;
  fs::rename(temporary, path, error);
  if (error) fail("cannot rename {} to {}: {}", temporary.string(), path.string(), error.message());
}

std::string missing_file(const ModelManifest& manifest) {
  for (const ModelFile& file : manifest.files) {
    std::error_code error;
    const auto size = fs::file_size(manifest.directory / file.name, error);
    if (error || size != file.size) return file.name;
  }
  return "";
}

std::string utc_now() {
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm utc{};
  gmtime_r(&now, &utc);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

}  // namespace realizar::hub
