#include "tokenizer/pre_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <realizar/error.h>

namespace realizar::tokenizer_detail {

namespace {

// GPT-2's pattern (OpenAI encoder.py, also HF ByteLevel with use_regex=true).
constexpr const char* kGpt2 =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
// LLaMA-3's pattern (Meta's tiktoken pat_str); Qwen2 uses it with single digits.
constexpr const char* kLlama3 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  pcre2_get_error_message(code, buffer, sizeof buffer);
  return reinterpret_cast<const char*>(buffer);
}

}  // namespace

const std::vector<PreTokenizerRegexes>& known_pre_tokenizers() {
  static const std::vector<PreTokenizerRegexes> known = {
      {"gpt2", {kGpt2}},
      {"llama-bpe", {kLlama3}},
      {"qwen2", {kQwen2}},
      // SmolLM/StarCoder: individual digits (HF Digits), then GPT-2's pattern.
      {"smollm", {R"(\p{N})", kGpt2}},
      // deepseek-ai/deepseek-coder-*: the Split sequence of its tokenizer.json, then Digits.
      {"deepseek-coder", {R"([\r\n])", R"(\s?\p{L}+)", R"(\s?\p{P}+)", "[\u4E00-\u9FA5\u0800-\u4E00\uAC00-\uD7FF]+", R"(\p{N})"}},
  };
  return known;
}

struct PreTokenizer::Compiled {
  pcre2_code* code = nullptr;
  ~Compiled() { pcre2_code_free(code); }
};

PreTokenizer::PreTokenizer(const std::string& name) {
  const PreTokenizerRegexes* found = nullptr;
  for (const auto& known : known_pre_tokenizers()) {
    if (known.name == name) found = &known;
  }
  if (!found) fail("tokenizer.ggml.pre '{}' is not supported (known: gpt2, llama-bpe, qwen2, smollm, deepseek-coder)", name);
  for (const std::string& pattern : found->patterns) {
    int error = 0;
    PCRE2_SIZE offset = 0;
    auto compiled = std::make_unique<Compiled>();
    compiled->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.c_str()), pattern.size(),
                                   PCRE2_UTF | PCRE2_UCP, &error, &offset, nullptr);
    if (!compiled->code) fail("pre-tokenizer regex '{}' at {}: {}", pattern, offset, pcre2_message(error));
    pcre2_jit_compile(compiled->code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter if JIT is unavailable
    regexes_.push_back(std::move(compiled));
  }
}

PreTokenizer::~PreTokenizer() = default;

namespace {

// Resources of one split() call: match data and a JIT stack large enough for long matches
// (a 1 MB run of letters is one match).
struct MatchResources {
  pcre2_match_data* data;
  pcre2_match_context* context;
  pcre2_jit_stack* stack;
  explicit MatchResources(pcre2_code* code)
      : data(pcre2_match_data_create_from_pattern(code, nullptr)),
        context(pcre2_match_context_create(nullptr)),
        stack(pcre2_jit_stack_create(32 * 1024, 512 * 1024 * 1024, nullptr)) {
    pcre2_jit_stack_assign(context, nullptr, stack);
  }
  ~MatchResources() {
    pcre2_jit_stack_free(stack);
    pcre2_match_context_free(context);
    pcre2_match_data_free(data);
  }
};

// Appends to `out` the matches of `code` in `piece` and the gaps between them, in order.
void split_isolated(pcre2_code* code, MatchResources& resources, std::string_view piece,
                    std::vector<std::string_view>& out) {
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(piece.data());
  size_t start = 0;
  while (start < piece.size()) {
    const int rc = pcre2_match(code, subject, piece.size(), start, PCRE2_NO_UTF_CHECK, resources.data, resources.context);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) fail("pre-tokenizer regex failed on a {}-byte piece: {}", piece.size(), pcre2_message(rc));
    const PCRE2_SIZE* span = pcre2_get_ovector_pointer(resources.data);
    if (span[0] > start) out.push_back(piece.substr(start, span[0] - start));
    if (span[1] == span[0]) fail("pre-tokenizer regex matched an empty string at byte {}", span[0]);
    out.push_back(piece.substr(span[0], span[1] - span[0]));
    start = span[1];
  }
  if (start < piece.size()) out.push_back(piece.substr(start));
}

}  // namespace

std::vector<std::string_view> PreTokenizer::split(std::string_view text) const {
  std::vector<std::string_view> pieces{text};
  if (text.empty()) return {};
  for (const auto& regex : regexes_) {
    MatchResources resources(regex->code);
    std::vector<std::string_view> next;
    next.reserve(pieces.size() * 2);
    for (std::string_view piece : pieces) split_isolated(regex->code, resources, piece, next);
    pieces = std::move(next);
  }
  return pieces;
}

}  // namespace realizar::tokenizer_detail
