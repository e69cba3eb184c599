// The hub's model-info JSON and picking a reference's GGUF file(s) from it.
#include "hub/repo_listing.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>

#include "hub/text.h"
#include "realizar/error.h"
#include "realizar/gguf.h"

namespace realizar::hub {
namespace {

using nlohmann::json;

bool is_hex(std::string_view text, size_t length) {
  return text.size() == length && std::all_of(text.begin(), text.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
         });
}

// A name we may put in a URL and, by its last component, in a directory.
bool safe_repo_path(std::string_view path) {
  if (path.empty() || path.size() > 1024 || path.front() == '/' || path.back() == '/') return false;
  for (char c : path) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f || c == '\\') return false;
  }
  size_t start = 0;
  while (start <= path.size()) {
    const size_t end = std::min(path.find('/', start), path.size());
    const std::string_view part = path.substr(start, end - start);
    if (part.empty() || part == "." || part == "..") return false;
    start = end + 1;
  }
  return true;
}

std::string_view base_name(std::string_view path) {
  const size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

uint64_t size_field(const json& object, std::string_view repo, const std::string& file) {
  const auto size = object.find("size");
  if (size == object.end() || !size->is_number_unsigned()) {
    fail("the hub's listing of {} gives no size for {}", repo, file);
  }
  return size->get<uint64_t>();
}

RepoFile parse_sibling(const json& sibling, std::string_view repo) {
  if (!sibling.is_object() || !sibling.contains("rfilename") || !sibling["rfilename"].is_string()) {
    fail("the hub's listing of {} has a file without a name (\"rfilename\")", repo);
  }
  RepoFile file;
  file.path = sibling["rfilename"].get<std::string>();
  if (!safe_repo_path(file.path)) {
    fail("the hub's listing of {} has an unsafe file name {}", repo, json(file.path).dump());
  }
  const auto lfs = sibling.find("lfs");
  if (lfs != sibling.end() && lfs->is_object()) {
    file.size = size_field(*lfs, repo, file.path);
    const auto sha = lfs->find("sha256");
    if (sha == lfs->end() || !sha->is_string() || !is_hex(sha->get<std::string>(), 64)) {
      fail("the hub's listing of {} gives no valid SHA-256 for {}", repo, file.path);
    }
    file.sha256 = ascii_lower(sha->get<std::string>());
  } else {
    file.size = size_field(sibling, repo, file.path);
  }
  return file;
}

// GGUF model files: *.gguf, except multimodal projectors (mmproj-*.gguf), as llama.cpp skips them.
bool is_model_file(std::string_view path) {
  const std::string name = ascii_lower(base_name(path));
  return name.ends_with(".gguf") && !name.starts_with("mmproj");
}

// The name without ".gguf" and without a split postfix: what the quant tag is looked for in.
std::string model_stem(std::string_view path) {
  if (const auto split = parse_split_name(path)) return std::string(base_name(split->prefix));
  const std::string_view name = base_name(path);
  return std::string(name.substr(0, name.size() - 5));
}

// One candidate: a single file, or the parts of a split model (by part number; 0 if absent).
struct Candidate {
  std::string display;  // the file name, or "NAME-0000{1..N}-of-0000N.gguf"
  std::vector<const RepoFile*> files;
  bool split = false;
};

std::vector<Candidate> model_candidates(const RepoListing& listing) {
  std::vector<Candidate> singles;
  std::map<std::pair<std::string, int>, Candidate> splits;  // (prefix, count) → parts
  for (const RepoFile& file : listing.files) {
    if (!is_model_file(file.path)) continue;
    if (const auto split = parse_split_name(file.path)) {
      Candidate& c = splits[{split->prefix, split->count}];
      if (c.files.empty()) {
        c.files.assign(static_cast<size_t>(split->count), nullptr);
        c.split = true;
        c.display =
            fmt::format("{}-{{1..{}}}-of-{:05}.gguf", split->prefix, split->count, split->count);
      }
      c.files[static_cast<size_t>(split->part - 1)] = &file;
    } else {
      singles.push_back({file.path, {&file}, false});
    }
  }
  for (auto& [key, candidate] : splits) singles.push_back(std::move(candidate));
  return singles;
}

std::string list_names(const std::vector<Candidate>& candidates) {
  std::string names;
  for (const Candidate& c : candidates) names += (names.empty() ? "" : ", ") + c.display;
  return names;
}

}  // namespace

std::optional<SplitName> parse_split_name(std::string_view path) {
  // "-00001-of-00003.gguf": 20 characters at the end (llama.cpp writes five digits).
  constexpr size_t kPostfix = 20;
  if (path.size() <= kPostfix) return std::nullopt;
  const std::string_view tail = path.substr(path.size() - kPostfix);
  auto digits = [&](size_t at) {
    int value = 0;
    for (size_t i = at; i < at + 5; ++i) {
      if (tail[i] < '0' || tail[i] > '9') return -1;
      value = value * 10 + (tail[i] - '0');
    }
    return value;
  };
  SplitName split{std::string(path.substr(0, path.size() - kPostfix)), digits(1), digits(10)};
  if (split.part < 1 || split.count < 1 || split.part > split.count ||
      gguf::split_part_path(split.prefix, static_cast<uint64_t>(split.part - 1),
                            static_cast<uint64_t>(split.count)) != path) {
    return std::nullopt;
  }
  return split;
}

bool name_has_quant(std::string_view name, std::string_view quant) {
  const std::string stem = ascii_lower(model_stem(name));
  const std::string tag = ascii_lower(quant);
  if (tag.empty()) return false;
  auto alnum = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; };
  for (size_t at = stem.find(tag); at != std::string::npos; at = stem.find(tag, at + 1)) {
    const size_t end = at + tag.size();
    const bool starts = at == 0 || !alnum(stem[at - 1]);
    const bool ends = end == stem.size() || stem[end] == '-' || stem[end] == '.';
    if (starts && ends) return true;
  }
  return false;
}

RepoListing parse_repo_listing(std::string_view json_text, std::string_view repo) {
  const json info = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (info.is_discarded() || !info.is_object()) {
    fail("the hub's listing of {} is not a JSON object", repo);
  }
  RepoListing listing;
  listing.id = info.contains("id") && info["id"].is_string() ? info["id"].get<std::string>()
                                                             : std::string(repo);
  if (!info.contains("sha") || !info["sha"].is_string() ||
      !is_hex(info["sha"].get<std::string>(), 40)) {
    fail("the hub's listing of {} has no commit (\"sha\")", repo);
  }
  listing.commit = ascii_lower(info["sha"].get<std::string>());
  if (!info.contains("siblings") || !info["siblings"].is_array()) {
    fail("the hub's listing of {} has no file list (\"siblings\")", repo);
  }
  for (const json& sibling : info["siblings"])
    listing.files.push_back(parse_sibling(sibling, repo));
  return listing;
}

std::vector<RepoFile> select_model_files(const RepoListing& listing,
                                         const ModelReference& reference) {
  const std::vector<Candidate> all = model_candidates(listing);
  if (all.empty()) fail("repository {} has no GGUF files", reference.repo);
  std::vector<Candidate> matches;
  for (const Candidate& c : all) {
    const RepoFile* named = *std::find_if(c.files.begin(), c.files.end(),
                                          [](const RepoFile* f) { return f != nullptr; });
    if (name_has_quant(named->path, reference.quant)) matches.push_back(c);
  }
  // A single file is preferred to a split model of the same quant.
  if (std::any_of(matches.begin(), matches.end(), [](const Candidate& c) { return !c.split; })) {
    std::erase_if(matches, [](const Candidate& c) { return c.split; });
  }
  if (matches.empty()) {
    fail("repository {} has no GGUF file for {}; its GGUF files: {} (name one as {}:QUANT)",
         reference.repo, reference.quant, list_names(all), reference.repo);
  }
  if (matches.size() > 1) {
    fail("repository {} has several GGUF files for {}: {}", reference.repo, reference.quant,
         list_names(matches));
  }
  std::vector<RepoFile> files;
  for (size_t i = 0; i < matches[0].files.size(); ++i) {
    if (matches[0].files[i] == nullptr) {
      fail("repository {}: split model {} lacks part {}", reference.repo, matches[0].display,
           i + 1);
    }
    files.push_back(*matches[0].files[i]);
  }
  return files;
}

}  // namespace realizar::hub
