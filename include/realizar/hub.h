// Model references and the model cache: naming a model on the Hugging Face hub, fetching its GGUF
// file(s) into the cache, and finding them again offline.
//
// A MODEL argument is a local path, a hub reference OWNER/REPO[:QUANT][@REVISION] (llama.cpp's -hf
// convention, e.g. Qwen/Qwen2.5-Coder-7B-Instruct-GGUF:Q4_K_M) or an alias of a small committed
// table (model_aliases(), e.g. qwen2.5-coder:7b). Hub API used (as huggingface_hub does):
//   GET {endpoint}/api/models/{repo}/revision/{revision}?blobs=true   commit ("sha") and files
//       ("siblings": rfilename, size, lfs.sha256)
//   GET {endpoint}/{repo}/resolve/{commit}/{file}                      the file (LFS files
//       redirect to a CDN), resumed with Range: bytes=N-
// with Authorization: Bearer $HF_TOKEN when set. Failures name the repository: 401/403 ask for a
// token or for the gated repository's terms, 404 says what is missing (X-Error-Code tells
// repository, revision and file apart).
//
// Cache layout under realizar_home() ($REALIZAR_HOME, default ~/.cache/realizar):
//   models/owner/repo/QUANT[@revision]/manifest.json   what was pulled (ModelManifest as JSON)
//   models/owner/repo/QUANT[@revision]/NAME.gguf       the file, or every part of a split model
//   models/owner/repo/QUANT[@revision]/NAME.gguf.partial  a download in progress (resumable)
// owner and repo in lower case (the hub's names are case-insensitive), '/' in a revision as %2F.
// A file gets its final name only after its size and SHA-256 match the hub's; the manifest is
// written last, so a directory without one holds an unfinished pull.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace realizar::hub {

inline constexpr std::string_view kDefaultQuant = "Q4_K_M";
inline constexpr std::string_view kDefaultRevision = "main";
inline constexpr std::string_view kDefaultEndpoint = "https://huggingface.co";

// A model on the hub: a repository and which of its GGUF models (the quant tag in the file name).
struct ModelReference {
  std::string repo;      // "OWNER/REPO" as written
  std::string quant;     // upper case, kDefaultQuant when not given
  std::string revision;  // branch, tag or commit; kDefaultRevision when not given

  // "OWNER/REPO:QUANT", with "@REVISION" unless it is main.
  std::string to_string() const;
};

struct ModelAlias {
  std::string_view name;       // "qwen2.5-coder:7b"
  std::string_view reference;  // "Qwen/Qwen2.5-Coder-7B-Instruct-GGUF:Q4_K_M"
};
const std::vector<ModelAlias>& model_aliases();

// An alias (case-insensitive) or OWNER/REPO[:QUANT][@REVISION]; std::nullopt when `text` is
// neither. OWNER and REPO follow the hub's rules (letters, digits, '-', '_', '.'; no "--" or "..";
// at most 96 characters), QUANT is letters, digits, '_' and '-', REVISION letters, digits and
// "-_./" without "..". A REPO ending in ".gguf" is taken for a file name, not a reference.
std::optional<ModelReference> parse_model_reference(std::string_view text);

// Where the hub is and how to talk to it.
struct HubSettings {
  std::string endpoint{kDefaultEndpoint};  // no trailing '/'
  std::string token;                       // empty: anonymous
  long stall_seconds = 10;  // no data for this long: the transfer is abandoned and retried
  int max_attempts = 5;     // per request; waits between attempts double from 1 s
  double first_retry_wait_seconds = 1.0;

  // HF_ENDPOINT, HF_TOKEN and HF_HUB_DOWNLOAD_TIMEOUT (seconds; huggingface_hub's names), each
  // optional. Throws realizar::Error for an endpoint that is not http(s):// or a timeout that is
  // not a positive number.
  static HubSettings from_environment();
};

// One file of a pulled model.
struct ModelFile {
  std::string name;          // file name in the model's directory
  std::string path_in_repo;  // the hub's rfilename (may have a folder)
  uint64_t size = 0;         // bytes
  std::string sha256;        // hex; the hub's LFS digest, else computed on arrival
};

// What was pulled: the manifest.json of a cached model, and pull_model's result.
struct ModelManifest {
  std::string reference;  // ModelReference::to_string() of the request
  std::string repo;       // the hub's name for the repository ("id")
  std::string quant;
  std::string revision;
  std::string commit;  // the revision's commit when pulled
  std::string endpoint;
  std::vector<ModelFile> files;     // in part order; one unless split
  std::string architecture;         // general.architecture of the first file ("" if unreadable)
  std::string pulled_at;            // UTC, ISO 8601 ("2026-12-01T09:30:00Z")
  std::filesystem::path directory;  // where the files are (not stored in the file)

  uint64_t size() const;                     // bytes of all files
  std::filesystem::path model_path() const;  // the file to open: the first one
};

struct PullOptions {
  HubSettings hub = HubSettings::from_environment();
  // Write the files here instead of the cache (no manifest, apr list does not show them).
  std::optional<std::filesystem::path> output_dir;
};

// Lists the repository at the reference's revision, picks the GGUF model whose file name carries
// the quant tag (case-insensitive, as a whole word of the name: Q4_K does not match Q4_K_M; mmproj
// files are skipped; a single file is preferred over a split model; several candidates or none are
// an error listing the GGUF files), and downloads every file it needs with a progress display on
// standard error. Files already present with the hub's size and digest are kept. Throws
// realizar::Error naming the repository (and file) when anything fails; files that were not
// verified keep their .partial name.
ModelManifest pull_model(const ModelReference& reference, const PullOptions& options = {});

// The path to open for MODEL: an existing path as is; a reference or alias from the cache when it
// is there (no network), else pulled into the cache first (with a note on standard error). Throws
// realizar::Error for text that is neither an existing file nor a reference ("no such file, and
// not a model reference ...") and for a failed pull.
std::filesystem::path resolve_model(std::string_view model);

// The cached model of `reference` whose files are all present with their recorded sizes.
std::optional<ModelManifest> find_cached_model(const ModelReference& reference);

// Every manifest in the cache, sorted by reference. `problems` gets one line for each manifest
// that cannot be read and each model whose files are missing or truncated.
std::vector<ModelManifest> list_cached_models(std::vector<std::string>& problems);

// Deletes the reference's directory from the cache (files, parts of an unfinished pull, manifest).
// Returns false when there is nothing for it.
bool remove_cached_model(const ModelReference& reference);

}  // namespace realizar::hub
