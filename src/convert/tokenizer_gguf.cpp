// TokenizerSpec <-> GGUF tokenizer metadata (see include/realizar/tokenizer_gguf.h).
#include "realizar/tokenizer_gguf.h"

#include "realizar/error.h"

namespace realizar {
namespace {

constexpr std::string_view kModel = "tokenizer.ggml.model";
constexpr std::string_view kPre = "tokenizer.ggml.pre";
constexpr std::string_view kTokens = "tokenizer.ggml.tokens";
constexpr std::string_view kScores = "tokenizer.ggml.scores";
constexpr std::string_view kTokenType = "tokenizer.ggml.token_type";
constexpr std::string_view kMerges = "tokenizer.ggml.merges";
constexpr std::string_view kBos = "tokenizer.ggml.bos_token_id";
constexpr std::string_view kEos = "tokenizer.ggml.eos_token_id";
constexpr std::string_view kEot = "tokenizer.ggml.eot_token_id";
constexpr std::string_view kUnknown = "tokenizer.ggml.unknown_token_id";
constexpr std::string_view kPadding = "tokenizer.ggml.padding_token_id";
constexpr std::string_view kAddBos = "tokenizer.ggml.add_bos_token";
constexpr std::string_view kAddEos = "tokenizer.ggml.add_eos_token";
constexpr std::string_view kAddSpacePrefix = "tokenizer.ggml.add_space_prefix";
constexpr std::string_view kChatTemplate = "tokenizer.chat_template";

std::optional<int32_t> optional_token_id(const gguf::File& file, std::string_view key) {
  if (file.find(key) == nullptr) return std::nullopt;
  const int64_t id = file.get_int(key);
  if (id < 0 || id > INT32_MAX) fail("{}: {} = {} is not a token id", file.path().string(), key, id);
  return static_cast<int32_t>(id);
}

std::optional<bool> optional_bool(const gguf::File& file, std::string_view key) {
  if (file.find(key) == nullptr) return std::nullopt;
  return file.get_bool(key);
}

void set_token_id(gguf::Writer& writer, std::string_view key, std::optional<int32_t> id) {
  if (!id) return;
  if (*id < 0) fail("tokenizer metadata: {} = {} is negative", key, *id);
  writer.set(std::string(key), gguf::Value(static_cast<uint32_t>(*id)));
}

void set_bool(gguf::Writer& writer, std::string_view key, std::optional<bool> value) {
  if (value) writer.set(std::string(key), gguf::Value(*value));
}

void check_parallel_length(std::string_view key, size_t length, size_t tokens) {
  if (length != 0 && length != tokens) {
    fail("tokenizer metadata: {} has {} entries for {} tokens", key, length, tokens);
  }
}

}  // namespace

bool has_tokenizer(const gguf::File& file) {
  return file.find(kModel) != nullptr && file.find(kTokens) != nullptr;
}

TokenizerSpec tokenizer_spec_from_gguf(const gguf::File& file) {
  if (!has_tokenizer(file)) {
    fail("{}: no tokenizer in this file ({} and {} are required)", file.path().string(), kModel,
         kTokens);
  }
  TokenizerSpec spec;
  spec.model = file.get_string(kModel);
  spec.pre = file.get_string_or(kPre, "");
  spec.tokens = file.get_string_array(kTokens);
  if (file.find(kScores) != nullptr) spec.scores = file.get_float_array(kScores);
  if (file.find(kTokenType) != nullptr) {
    for (int64_t type : file.get_int_array(kTokenType)) {
      spec.token_type.push_back(static_cast<int32_t>(type));
    }
  }
  if (file.find(kMerges) != nullptr) spec.merges = file.get_string_array(kMerges);
  spec.bos_token_id = optional_token_id(file, kBos);
  spec.eos_token_id = optional_token_id(file, kEos);
  spec.eot_token_id = optional_token_id(file, kEot);
  spec.unknown_token_id = optional_token_id(file, kUnknown);
  spec.padding_token_id = optional_token_id(file, kPadding);
  spec.add_bos_token = optional_bool(file, kAddBos);
  spec.add_eos_token = optional_bool(file, kAddEos);
  spec.add_space_prefix = optional_bool(file, kAddSpacePrefix);
  if (file.find(kChatTemplate) != nullptr) spec.chat_template = file.get_string(kChatTemplate);
  return spec;
}

void write_tokenizer_metadata(gguf::Writer& writer, const TokenizerSpec& spec) {
  check_parallel_length(kScores, spec.scores.size(), spec.tokens.size());
  check_parallel_length(kTokenType, spec.token_type.size(), spec.tokens.size());
  writer.set(std::string(kModel), gguf::Value(spec.model));
  if (!spec.pre.empty()) writer.set(std::string(kPre), gguf::Value(spec.pre));
  writer.set(std::string(kTokens), gguf::Value::array(spec.tokens));
  if (!spec.scores.empty()) writer.set(std::string(kScores), gguf::Value::array(spec.scores));
  if (!spec.token_type.empty()) {
    writer.set(std::string(kTokenType), gguf::Value::array(spec.token_type));
  }
  // llama.cpp refuses a byte-level ("gpt2") vocabulary without the merges key, even an empty one.
  if (!spec.merges.empty() || spec.model == "gpt2") {
    writer.set(std::string(kMerges), gguf::Value::array(spec.merges));
  }
  set_token_id(writer, kBos, spec.bos_token_id);
  set_token_id(writer, kEos, spec.eos_token_id);
  set_token_id(writer, kEot, spec.eot_token_id);
  set_token_id(writer, kUnknown, spec.unknown_token_id);
  set_token_id(writer, kPadding, spec.padding_token_id);
  set_bool(writer, kAddBos, spec.add_bos_token);
  set_bool(writer, kAddEos, spec.add_eos_token);
  set_bool(writer, kAddSpacePrefix, spec.add_space_prefix);
  if (spec.chat_template) {
    writer.set(std::string(kChatTemplate), gguf::Value(*spec.chat_template));
  }
}

}  // namespace realizar
