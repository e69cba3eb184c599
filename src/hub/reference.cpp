// Parsing model references (OWNER/REPO[:QUANT][@REVISION]) and the alias table.
#include <fmt/format.h>

#include <algorithm>
#include <cctype>

#include "hub/text.h"
#include "realizar/hub.h"

namespace realizar::hub {
namespace {

// Short names for published GGUF repositories of the architectures the engine runs (llama,
// qwen2, phi2), in the style of Ollama's tags. Each points at a real repository and quant.
const std::vector<ModelAlias> kAliases = {
    {"qwen2.5:0.5b", "Qwen/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M"},
    {"qwen2.5:1.5b", "Qwen/Qwen2.5-1.5B-Instruct-GGUF:Q4_K_M"},
    {"qwen2.5:7b", "Qwen/Qwen2.5-7B-Instruct-GGUF:Q4_K_M"},
    {"qwen2.5-coder:1.5b", "Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF:Q4_K_M"},
    {"qwen2.5-coder:7b", "Qwen/Qwen2.5-Coder-7B-Instruct-GGUF:Q4_K_M"},
    {"llama3.2:1b", "bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M"},
    {"llama3.2:3b", "bartowski/Llama-3.2-3B-Instruct-GGUF:Q4_K_M"},
    {"tinyllama:1.1b", "TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF:Q4_K_M"},
    {"phi2:2.7b", "TheBloke/phi-2-GGUF:Q4_K_M"},
};

constexpr size_t kMaxNameLength = 96;  // the hub's limit for OWNER and REPO

bool is_alnum(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; }

// huggingface_hub's validate_repo_id for one side of OWNER/REPO: [\w.-], starting and ending
// with a letter, digit or '_', no "--" or "..".
bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameLength) return false;
  auto word = [](char c) { return is_alnum(c) || c == '_'; };
  if (!word(name.front()) || !word(name.back())) return false;
  if (name.find("--") != std::string_view::npos || name.find("..") != std::string_view::npos) {
    return false;
  }
  return std::all_of(name.begin(), name.end(),
                     [&](char c) { return word(c) || c == '-' || c == '.'; });
}

bool valid_quant(std::string_view quant) {
  return !quant.empty() && quant.size() <= 64 && is_alnum(quant.front()) &&
         std::all_of(quant.begin(), quant.end(),
                     [](char c) { return is_alnum(c) || c == '_' || c == '-'; });
}

// Branch and tag names, commits and refs/pr/N: no "..", no leading '/', '.' or '-'.
bool valid_revision(std::string_view revision) {
  if (revision.empty() || revision.size() > 256 || !is_alnum(revision.front())) return false;
  if (revision.find("..") != std::string_view::npos || revision.back() == '/') return false;
  return std::all_of(revision.begin(), revision.end(), [](char c) {
    return is_alnum(c) || c == '-' || c == '_' || c == '.' || c == '/';
  });
}

std::optional<ModelReference> parse_hub_reference(std::string_view text) {
  ModelReference ref{std::string(), std::string(kDefaultQuant), std::string(kDefaultRevision)};
  if (const size_t at = text.find('@'); at != std::string_view::npos) {
    if (!valid_revision(text.substr(at + 1))) return std::nullopt;
    ref.revision = std::string(text.substr(at + 1));
    text = text.substr(0, at);
  }
  if (const size_t colon = text.find(':'); colon != std::string_view::npos) {
    if (!valid_quant(text.substr(colon + 1))) return std::nullopt;
    ref.quant = ascii_upper(text.substr(colon + 1));
    text = text.substr(0, colon);
  }
  const size_t slash = text.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  const std::string_view owner = text.substr(0, slash), repo = text.substr(slash + 1);
  if (!valid_name(owner) || !valid_name(repo) || ascii_lower(repo).ends_with(".gguf")) {
    return std::nullopt;
  }
  ref.repo = std::string(text);
  return ref;
}

}  // namespace

std::string ModelReference::to_string() const {
  if (revision == kDefaultRevision) return fmt::format("{}:{}", repo, quant);
  return fmt::format("{}:{}@{}", repo, quant, revision);
}

const std::vector<ModelAlias>& model_aliases() { return kAliases; }

std::optional<ModelReference> parse_model_reference(std::string_view text) {
  const std::string key = ascii_lower(text);
  for (const ModelAlias& alias : kAliases) {
    if (alias.name == key) return parse_hub_reference(alias.reference);
  }
  return parse_hub_reference(text);
}

}  // namespace realizar::hub
