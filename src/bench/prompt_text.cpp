#include "bench/prompt_text.h"

#include <random>

#include "realizar/error.h"

namespace realizar::bench {
namespace {

// Common English words; each is one token, with its leading space, in the byte-level BPE and
// SentencePiece vocabularies we test with (Qwen2, LLaMA 2).
constexpr const char* kWords[] = {
    "the",   "of",    "and",   "to",    "in",    "is",    "was",   "for",   "on",    "are",
    "with",  "as",    "it",    "at",    "be",    "this",  "from",  "by",    "or",    "have",
    "an",    "they",  "which", "one",   "you",   "were",  "all",   "we",    "her",   "she",
    "there", "been",  "his",   "their", "if",    "has",   "when",  "who",   "will",  "more",
    "no",    "out",   "so",    "said",  "what",  "up",    "its",   "about", "than",  "into",
    "them",  "can",   "only",  "other", "time",  "new",   "some",  "could", "these", "two",
    "may",   "first", "then",  "do",    "any",   "like",  "my",    "now",   "over",  "such",
    "our",   "man",   "me",    "even",  "most",  "made",  "after", "also",  "did",   "many",
    "before", "must", "through", "years", "where", "much", "your", "way",  "well",  "down",
    "should", "because", "each", "just", "those", "people", "how", "too",  "little", "state",
    "good",  "very",  "make",  "world", "still", "own",   "see",   "men",   "work",  "long",
    "get",   "here",  "between", "both", "life", "being", "under", "never", "day",  "same",
    "another", "know", "while", "last", "might", "us",   "great", "old",   "year",  "off",
    "come",  "since", "against", "go",  "came",  "right", "used",  "take",  "three", "water",
};

}  // namespace

PromptMaker::PromptMaker(const Tokenizer* tokenizer, uint64_t seed)
    : tokenizer_(tokenizer), seed_(seed) {
  // A word's cost is what appending it to a text adds: SentencePiece gives " the" alone a token
  // of its own for the space, but not after another word.
  const auto count = [&](const std::string& text) {
    return static_cast<int64_t>(tokenizer_->encode(text, false, false).size());
  };
  const int64_t base = tokenizer_ == nullptr ? 0 : count("a");
  for (const char* w : kWords) {
    words_.push_back(std::string(" ") + w);
    const int64_t n = tokenizer_ == nullptr ? 1 : count("a" + words_.back()) - base;
    word_tokens_.push_back(n);
    if (n == 1) single_tokens_.push_back(words_.size() - 1);
  }
  if (single_tokens_.empty()) fail("prompts: no common English word is a single token of this tokenizer");
}

std::string PromptMaker::make(int64_t tokens, int index) const {
  if (tokens < 1) fail("prompts: want at least 1 token, got {}", tokens);
  std::mt19937_64 rng(seed_ * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(index));
  std::vector<size_t> picked;
  int64_t count = 0;
  // Words are appended while they fit; the last tokens come from one-token words. Pre-tokenizers
  // split before each space, so the text's encoding is close to the words' encodings in a row.
  while (count < tokens) {
    size_t w = static_cast<size_t>(rng() % words_.size());
    if (count + word_tokens_[w] > tokens) w = single_tokens_[rng() % single_tokens_.size()];
    picked.push_back(w);
    count += word_tokens_[w];
  }
  auto text_of = [&] {
    std::string text;
    for (size_t w : picked) text += words_[w];
    return text.substr(1);  // no leading space: SentencePiece adds its own
  };
  if (tokenizer_ == nullptr) return text_of();
  // Where the first word or a tokenizer's merges break the sum, add or drop one-token words
  // until the text encodes to exactly `tokens`.
  for (int attempt = 0; attempt < 16; ++attempt) {
    const std::string text = text_of();
    const auto actual = static_cast<int64_t>(tokenizer_->encode(text, false, false).size());
    if (actual == tokens) return text;
    if (actual < tokens) {
      for (int64_t i = actual; i < tokens; ++i) picked.push_back(single_tokens_[rng() % single_tokens_.size()]);
    } else if (picked.size() > 1) {
      picked.pop_back();
    }
  }
  fail("prompts: cannot make a text of exactly {} tokens under this tokenizer", tokens);
}

}  // namespace realizar::bench
