// Pulling a reference's GGUF file(s) from the hub, and finding, listing and removing what the
// cache holds (realizar/hub.h).
#include <fmt/format.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "hub/cache.h"
#include "hub/download.h"
#include "hub/http.h"
#include "hub/repo_listing.h"
#include "hub/text.h"
#include "realizar/error.h"
#include "realizar/gguf.h"
#include "realizar/hub.h"
#include "util/progress.h"
#include "util/sha256.h"

namespace realizar::hub {
namespace {

namespace fs = std::filesystem;

constexpr size_t kMaxListingBytes = size_t{64} << 20;  // real listings are well under 1 MiB

void note(const std::string& line) { std::fprintf(stderr, "apr: %s\n", line.c_str()); }

// The hub's X-Error-Message, made safe to print: printable ASCII, at most 200 characters.
std::string hub_says(const HttpStatusError& error) {
  std::string text;
  for (char c : error.error_message) {
    if (c >= 0x20 && c < 0x7f && text.size() < 200) text.push_back(c);
  }
  return text.empty() ? "" : "; the hub says: " + text;
}

// A 4xx answer explained in terms of the repository (and `file`, empty for the listing).
[[noreturn]] void fail_for_status(const HttpStatusError& error, const ModelReference& reference,
                                  const HubSettings& hub, std::string_view file) {
  const std::string detail = fmt::format("HTTP {}{}", error.status, hub_says(error));
  const std::string& repo = reference.repo;
  if (error.error_code == "GatedRepo") {
    fail("repository {} is gated: accept its terms at {}/{} with the account of HF_TOKEN ({})",
         repo, hub.endpoint, repo, detail);
  }
  if (error.error_code == "RevisionNotFound") {
    fail("repository {} has no revision {} ({})", repo, reference.revision, detail);
  }
  if (error.error_code == "EntryNotFound") {
    fail("repository {} has no file {} at revision {} ({})", repo, file, reference.revision,
         detail);
  }
  if (error.status == 401 || error.status == 403) {
    // The hub answers 401 for a missing repository as for a private one (huggingface_hub treats
    // both as RepositoryNotFound).
    if (hub.token.empty()) {
      fail(
          "repository {} was not found, or it is private or gated and needs a token (set "
          "HF_TOKEN) ({})",
          repo, detail);
    }
    fail("repository {} was not found, or HF_TOKEN does not give access to it ({})", repo, detail);
  }
  if (error.status == 404) {
    if (file.empty() || error.error_code == "RepoNotFound") {
      fail("no such repository: {} ({} from {})", repo, detail, hub.endpoint);
    }
    fail("no such file in repository {}: {} ({})", repo, file, detail);
  }
  fail("repository {}: the hub answered {} for {}", repo, detail, error.url);
}

RepoListing fetch_listing(const ModelReference& reference, const HubSettings& hub) {
  const std::string url = fmt::format("{}/api/models/{}/revision/{}?blobs=true", hub.endpoint,
                                      reference.repo, url_escape(reference.revision, false));
  std::string body;
  const BodySink collect = [&](const HttpAttempt&, std::string_view piece) {
    if (body.size() + piece.size() > kMaxListingBytes) {
      fail("the hub's listing of {} is larger than {} MiB", reference.repo, kMaxListingBytes >> 20);
    }
    body.append(piece);
    return true;
  };
  const auto attempt = [&]() -> std::optional<std::string> {
    body.clear();
    const HttpAttempt response = http_get({url, hub.token, 0, hub.stall_seconds}, collect);
    if (!response.transport_error.empty()) {
      if (response.retriable) return response.transport_error;
      fail("listing {}: {} ({})", reference.repo, response.transport_error, url);
    }
    if (response.status == 200) return std::nullopt;
    if (retriable_status(response.status)) return fmt::format("HTTP {}", response.status);
    if (response.status < 400) {
      fail("listing {}: unexpected HTTP {} from {}", reference.repo, response.status, url);
    }
    fail_for_status(HttpStatusError(response), reference, hub, "");
  };
  with_retries(hub, "listing " + reference.repo, attempt, note);
  return parse_repo_listing(body, reference.repo);
}

std::string base_name(const std::string& path) { return fs::path(path).filename().string(); }

// Whether `dest` already holds `file`: its size, and its digest (taken from the previous
// manifest when that recorded the same one, else computed).
bool already_have(const fs::path& dest, const RepoFile& file,
                  const std::optional<ModelManifest>& previous) {
  std::error_code error;
  if (fs::file_size(dest, error) != file.size || error || file.sha256.empty()) return false;
  if (previous) {
    for (const ModelFile& known : previous->files) {
      if (known.name == dest.filename() && known.size == file.size && known.sha256 == file.sha256) {
        return true;
      }
    }
  }
  return sha256_file_hex(dest) == file.sha256;
}

std::string read_architecture(const fs::path& path) {
  try {
    return gguf::File::open(path).get_string_or("general.architecture", "");
  } catch (const Error& error) {
    note(fmt::format("warning: the model cannot be opened: {}", error.what()));
    return "";
  }
}

// The previous manifest of a cache directory, if it can be read (a broken one is replaced).
std::optional<ModelManifest> previous_manifest(const fs::path& dir) {
  try {
    return read_manifest(dir);
  } catch (const Error&) {
    return std::nullopt;
  }
}

}  // namespace

HubSettings HubSettings::from_environment() {
  HubSettings settings;
  if (const char* endpoint = std::getenv("HF_ENDPOINT"); endpoint && *endpoint) {
    settings.endpoint = endpoint;
    while (settings.endpoint.ends_with('/')) settings.endpoint.pop_back();
    if (!settings.endpoint.starts_with("http://") && !settings.endpoint.starts_with("https://")) {
      fail("HF_ENDPOINT must start with http:// or https://, got '{}'", endpoint);
    }
  }
  if (const char* token = std::getenv("HF_TOKEN"); token && *token) {
    settings.token = token;
    if (settings.token.find_first_of("\r\n") != std::string::npos) {
      fail("HF_TOKEN contains a line break");
    }
  }
  if (const char* timeout = std::getenv("HF_HUB_DOWNLOAD_TIMEOUT"); timeout && *timeout) {
    char* end = nullptr;
    const double seconds = std::strtod(timeout, &end);
    if (*end != '\0' || !(seconds > 0) || seconds > 86400) {
      fail("HF_HUB_DOWNLOAD_TIMEOUT must be a number of seconds greater than 0, got '{}'", timeout);
    }
    settings.stall_seconds = static_cast<long>(std::ceil(seconds));
  }
  return settings;
}

uint64_t ModelManifest::size() const {
  uint64_t total = 0;
  for (const ModelFile& file : files) total += file.size;
  return total;
}

fs::path ModelManifest::model_path() const { return directory / files.front().name; }

ModelManifest pull_model(const ModelReference& reference, const PullOptions& options) {
  const HubSettings& hub = options.hub;
  const RepoListing listing = fetch_listing(reference, hub);
  const std::vector<RepoFile> files = select_model_files(listing, reference);
  const bool to_cache = !options.output_dir;
  const fs::path dir = to_cache ? model_dir(reference) : *options.output_dir;
  std::error_code error;
  fs::create_directories(dir, error);
  if (error) fail("cannot create {}: {}", dir.string(), error.message());
  const std::optional<ModelManifest> previous = to_cache ? previous_manifest(dir) : std::nullopt;

  ModelManifest manifest{reference.to_string(),
                         listing.id,
                         reference.quant,
                         reference.revision,
                         listing.commit,
                         hub.endpoint,
                         {},
                         "",
                         utc_now(),
                         dir};
  uint64_t total = 0;
  for (const RepoFile& file : files) total += file.size;
  note(fmt::format(
      "{}: {} ({}), commit {}, from {}", manifest.reference,
      files.size() == 1 ? base_name(files[0].path) : fmt::format("{} parts", files.size()),
      Progress::format_amount(total, Progress::Unit::Bytes), listing.commit.substr(0, 12),
      hub.endpoint));
  for (const RepoFile& file : files) {
    ModelFile entry{base_name(file.path), file.path, file.size, file.sha256};
    const fs::path dest = dir / entry.name;
    if (already_have(dest, file, previous)) {
      note(fmt::format("{}: already present", entry.name));
    } else {
      const std::string url = fmt::format("{}/{}/resolve/{}/{}", hub.endpoint, listing.id,
                                          listing.commit, url_escape(file.path, true));
      try {
        entry.sha256 = download_file({url, dest, file.size, file.sha256}, hub);
      } catch (const HttpStatusError& status) {
        fail_for_status(status, reference, hub, file.path);
      }
    }
    manifest.files.push_back(std::move(entry));
  }
  manifest.architecture = read_architecture(manifest.model_path());
  if (to_cache) write_manifest(manifest);
  return manifest;
}

std::optional<ModelManifest> find_cached_model(const ModelReference& reference) {
  std::optional<ModelManifest> manifest;
  try {
    manifest = read_manifest(model_dir(reference));
  } catch (const Error& error) {
    note(fmt::format("warning: {}", error.what()));
    return std::nullopt;
  }
  if (!manifest || !missing_file(*manifest).empty()) return std::nullopt;
  return manifest;
}

fs::path resolve_model(std::string_view model) {
  std::error_code error;
  if (fs::exists(fs::path(model), error)) return fs::path(model);
  const std::optional<ModelReference> reference = parse_model_reference(model);
  if (!reference) {
    if (ascii_lower(model).ends_with(".gguf")) fail("{}: no such file", model);
    fail(
        "{}: no such file, and not a model reference (OWNER/REPO[:QUANT][@REVISION], or an "
        "alias such as {})",
        model, model_aliases().front().name);
  }
  if (const auto cached = find_cached_model(*reference)) return cached->model_path();
  note(fmt::format("{} is not in the cache; pulling it", reference->to_string()));
  return pull_model(*reference).model_path();
}

std::vector<ModelManifest> list_cached_models(std::vector<std::string>& problems) {
  std::vector<ModelManifest> models;
  const fs::path root = models_dir();
  std::error_code error;
  if (!fs::is_directory(root, error)) return models;
  // models/owner/repo/QUANT[@revision]: three levels of directories.
  std::vector<fs::path> level = {root};
  for (int depth = 0; depth < 3; ++depth) {
    std::vector<fs::path> next;
    for (const fs::path& dir : level) {
      for (const auto& entry : fs::directory_iterator(dir, error)) {
        if (entry.is_directory(error)) next.push_back(entry.path());
      }
    }
    level = std::move(next);
  }
  for (const fs::path& dir : level) {
    try {
      std::optional<ModelManifest> manifest = read_manifest(dir);
      if (!manifest) {
        problems.push_back(
            fmt::format("{}: an unfinished pull (apr pull resumes it, apr rm "
                        "removes it)",
                        dir.string()));
        continue;
      }
      if (const std::string missing = missing_file(*manifest); !missing.empty()) {
        problems.push_back(
            fmt::format("{}: {} is missing or truncated (apr pull {} fetches it again)",
                        manifest->reference, missing, manifest->reference));
      }
      models.push_back(std::move(*manifest));
    } catch (const Error& e) {
      problems.push_back(e.what());
    }
  }
  std::sort(models.begin(), models.end(), [](const ModelManifest& a, const ModelManifest& b) {
    return a.reference < b.reference;
  });
  return models;
}

bool remove_cached_model(const ModelReference& reference) {
  const fs::path dir = model_dir(reference);
  std::error_code error;
  if (!fs::is_directory(dir, error)) return false;
  fs::remove_all(dir, error);
  if (error) fail("cannot remove {}: {}", dir.string(), error.message());
  // The owner/repo directories go too once empty.
  for (fs::path parent = dir.parent_path(); parent != models_dir(); parent = parent.parent_path()) {
    if (!fs::is_empty(parent, error) || error || !fs::remove(parent, error)) break;
  }
  return true;
}

}  // namespace realizar::hub
