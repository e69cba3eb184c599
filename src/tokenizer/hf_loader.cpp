// Hugging Face tokenizer.json (+ tokenizer_config.json) → GGUF tokenizer metadata, following
// llama.cpp's convert_hf_to_gguf.py (get_vocab_base, SpecialVocab).
#include <realizar/error.h>
#include <realizar/tokenizer.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>

#include "tokenizer/pre_tokenizer.h"

namespace realizar {

using nlohmann::json;

namespace {

json read_json(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open {}", path.string());
  std::stringstream buffer;
  buffer << in.rdbuf();
  try {
    return json::parse(buffer.str());
  } catch (const json::exception& e) {
    fail("{}: invalid JSON: {}", path.string(), e.what());
  }
}

// The regexes a tokenizer.json pre_tokenizer applies, in order, written the way
// known_pre_tokenizers() writes them.
void collect_pre_tokenizer_regexes(const json& node, std::vector<std::string>& out, const std::filesystem::path& file) {
  if (node.is_null()) return;
  const std::string type = node.value("type", "");
  if (type == "Sequence") {
    for (const json& child : node.at("pretokenizers")) collect_pre_tokenizer_regexes(child, out, file);
  } else if (type == "Split") {
    const json& pattern = node.at("pattern");
    if (!pattern.contains("Regex") || node.value("behavior", "") != "Isolated" || node.value("invert", false))
      fail("{}: unsupported Split pre-tokenizer {}", file.string(), node.dump());
    out.push_back(pattern.at("Regex").get<std::string>());
  } else if (type == "Digits") {
    out.push_back(node.value("individual_digits", false) ? R"(\p{N})" : R"(\p{N}+)");
  } else if (type == "ByteLevel") {
    if (node.value("use_regex", true)) out.push_back(tokenizer_detail::known_pre_tokenizers().front().patterns.at(0));
  } else {
    fail("{}: unsupported pre-tokenizer type '{}'", file.string(), type);
  }
}

std::string detect_pre(const json& tokenizer, const std::filesystem::path& file) {
  std::vector<std::string> regexes;
  collect_pre_tokenizer_regexes(tokenizer.value("pre_tokenizer", json()), regexes, file);
  for (const auto& known : tokenizer_detail::known_pre_tokenizers()) {
    if (known.patterns == regexes) return known.name;
  }
  std::string listed;
  for (const auto& regex : regexes) listed += "\n  " + regex;
  fail("{}: pre-tokenizer not recognised (regexes:{})", file.string(), listed);
}

// A merge as "left right" (tokenizer.json holds either that string or a [left, right] pair).
std::string merge_string(const json& merge) {
  if (merge.is_string()) return merge.get<std::string>();
  return merge.at(0).get<std::string>() + " " + merge.at(1).get<std::string>();
}

bool is_sentencepiece_bpe(const json& model, const json& tokenizer) {
  if (model.value("byte_fallback", false)) return true;
  const std::string normalizer = tokenizer.value("normalizer", json()).dump();
  return normalizer.find("\xE2\x96\x81") != std::string::npos;  // replaces " " by "▁"
}

// convert_hf_to_gguf.py's does_token_look_special.
bool looks_special(const std::string& text) {
  return (text.starts_with("<|") && text.ends_with("|>")) || text == "<pad>" || text == "<mask>";
}

// A token named in tokenizer_config.json: a string or an AddedToken object {"content": ...}.
std::optional<std::string> config_token(const json& config, const char* key) {
  if (!config.contains(key) || config[key].is_null()) return std::nullopt;
  const json& value = config[key];
  return value.is_string() ? value.get<std::string>() : value.at("content").get<std::string>();
}

using TokenIds = std::unordered_map<std::string, int32_t>;

std::optional<int32_t> find_id(const TokenIds& ids, const std::optional<std::string>& text) {
  if (!text) return std::nullopt;
  const auto it = ids.find(*text);
  if (it == ids.end()) return std::nullopt;
  return it->second;
}

void apply_config(TokenizerSpec& spec, const TokenIds& ids, const json& config) {
  spec.bos_token_id = find_id(ids, config_token(config, "bos_token"));
  spec.eos_token_id = find_id(ids, config_token(config, "eos_token"));
  spec.padding_token_id = find_id(ids, config_token(config, "pad_token"));
  if (auto unk = find_id(ids, config_token(config, "unk_token"))) spec.unknown_token_id = unk;
  if (config.contains("add_bos_token") && config["add_bos_token"].is_boolean()) spec.add_bos_token = config["add_bos_token"].get<bool>();
  if (config.contains("add_eos_token") && config["add_eos_token"].is_boolean()) spec.add_eos_token = config["add_eos_token"].get<bool>();
  if (!config.contains("chat_template")) return;
  const json& tmpl = config["chat_template"];
  if (tmpl.is_string()) {
    spec.chat_template = tmpl.get<std::string>();
  } else if (tmpl.is_array()) {  // named templates: the "default" one is the chat template
    for (const json& named : tmpl) {
      if (named.value("name", "") == "default") spec.chat_template = named.at("template").get<std::string>();
    }
  }
}

}  // namespace

TokenizerSpec load_hf_tokenizer(const std::filesystem::path& tokenizer_json,
                                const std::optional<std::filesystem::path>& tokenizer_config_json) {
  const json tokenizer = read_json(tokenizer_json);
  const json& model = tokenizer.at("model");
  if (model.value("type", "") != "BPE")
    fail("{}: model type '{}' is not supported (BPE only)", tokenizer_json.string(), model.value("type", ""));

  std::map<int32_t, std::string> by_id;
  for (const auto& [text, id] : model.at("vocab").items()) by_id[id.get<int32_t>()] = text;
  std::map<int32_t, const json*> added;
  const json no_added_tokens = json::array();
  const json& added_tokens = tokenizer.contains("added_tokens") ? tokenizer["added_tokens"] : no_added_tokens;
  for (const json& token : added_tokens) {
    const int32_t id = token.at("id").get<int32_t>();
    by_id[id] = token.at("content").get<std::string>();
    added[id] = &token;
  }
  if (by_id.empty() || by_id.begin()->first < 0) fail("{}: empty vocabulary or negative id", tokenizer_json.string());

  TokenizerSpec spec;
  const bool sentencepiece = is_sentencepiece_bpe(model, tokenizer);
  spec.model = sentencepiece ? "llama" : "gpt2";
  if (!sentencepiece) spec.pre = detect_pre(tokenizer, tokenizer_json);
  const size_t n = static_cast<size_t>(by_id.rbegin()->first) + 1;
  spec.tokens.resize(n);
  spec.token_type.assign(n, static_cast<int32_t>(TokenType::normal));
  for (size_t id = 0; id < n; ++id) {
    const auto it = by_id.find(static_cast<int32_t>(id));
    if (it == by_id.end()) {
      spec.tokens[id] = fmt::format("[PAD{}]", id);
      spec.token_type[id] = static_cast<int32_t>(TokenType::unused);
      continue;
    }
    spec.tokens[id] = it->second;
    if (const auto a = added.find(static_cast<int32_t>(id)); a != added.end()) {
      const bool special = a->second->value("special", false) || looks_special(it->second);
      spec.token_type[id] = static_cast<int32_t>(special ? TokenType::control : TokenType::user_defined);
    }
  }
  for (const json& merge : model.at("merges")) spec.merges.push_back(merge_string(merge));
  TokenIds ids;
  for (size_t id = 0; id < n; ++id) ids.try_emplace(spec.tokens[id], static_cast<int32_t>(id));

  if (sentencepiece) {
    // SentencePiece BPE merges the highest-scoring piece first; tokenizer.json keeps that order
    // as merge ranks, so score = −rank of the first merge forming the token.
    spec.scores.assign(n, -static_cast<float>(spec.merges.size()));
    for (size_t rank = spec.merges.size(); rank-- > 0;) {
      std::string joined = spec.merges[rank];
      joined.erase(joined.find(' ', 1), 1);
      if (const auto id = find_id(ids, joined)) spec.scores[*id] = -static_cast<float>(rank);
    }
    for (size_t id = 0; id < n; ++id) {
      const std::string& text = spec.tokens[id];
      if (text.size() == 6 && text.starts_with("<0x") && text.ends_with(">")) spec.token_type[id] = static_cast<int32_t>(TokenType::byte);
    }
    if (model.contains("unk_token") && model["unk_token"].is_string()) {
      spec.unknown_token_id = find_id(ids, model["unk_token"].get<std::string>());
      if (spec.unknown_token_id) spec.token_type[*spec.unknown_token_id] = static_cast<int32_t>(TokenType::unknown);
    }
    spec.merges.clear();  // GGUF "llama" tokenizers carry scores, not merges
    const std::string normalizer = tokenizer.value("normalizer", json()).dump();
    spec.add_space_prefix = normalizer.find("Prepend") != std::string::npos;
  }
  if (tokenizer_config_json) apply_config(spec, ids, read_json(*tokenizer_config_json));
  return spec;
}

void pad_vocab(TokenizerSpec& spec, size_t vocab_size) {
  if (spec.tokens.size() > vocab_size)
    fail("cannot pad a vocabulary of {} tokens down to {}", spec.tokens.size(), vocab_size);
  const bool has_scores = !spec.scores.empty();
  if (spec.token_type.empty()) spec.token_type.assign(spec.tokens.size(), static_cast<int32_t>(TokenType::normal));
  for (size_t id = spec.tokens.size(); id < vocab_size; ++id) {
    spec.tokens.push_back(fmt::format("[PAD{}]", id));
    spec.token_type.push_back(static_cast<int32_t>(TokenType::unused));
    if (has_scores) spec.scores.push_back(-1000.0f);
  }
}

}  // namespace realizar
