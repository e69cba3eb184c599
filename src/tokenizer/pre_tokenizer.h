// Pre-tokenizers of byte-level BPE families: the regexes that cut text into words before BPE,
// selected by `tokenizer.ggml.pre` (private to src/tokenizer).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace realizar::tokenizer_detail {

// A known `tokenizer.ggml.pre` value and the regexes it applies in sequence. Each regex splits
// every piece left by the previous one into matches and the gaps between them (Hugging Face
// `Split` with behavior "Isolated"). Patterns are those of the families' tokenizer.json files.
struct PreTokenizerRegexes {
  std::string name;
  std::vector<std::string> patterns;
};
const std::vector<PreTokenizerRegexes>& known_pre_tokenizers();

// The regexes compiled with PCRE2 (UTF + UCP, JIT). Immutable; split() is thread-safe.
class PreTokenizer {
 public:
  // Throws realizar::Error for a name not in known_pre_tokenizers().
  explicit PreTokenizer(const std::string& name);
  ~PreTokenizer();
  PreTokenizer(const PreTokenizer&) = delete;
  PreTokenizer& operator=(const PreTokenizer&) = delete;

  // Cuts valid UTF-8 `text` into words (views into `text`), in order, covering it exactly.
  std::vector<std::string_view> split(std::string_view text) const;

 private:
  struct Compiled;
  std::vector<std::unique_ptr<Compiled>> regexes_;
};

}  // namespace realizar::tokenizer_detail
