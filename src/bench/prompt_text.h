// Prompts of a planned length for a serving workload: random common English words, the same
// for every server (seeded by the workload's seed and the request's index). With the served
// model's tokenizer the text encodes to exactly the planned number of tokens; without one each
// word is about one token, and the server's `usage` tells the real count.
#pragma once

#include <cstdint>
#include <string>

#include "realizar/tokenizer.h"

namespace realizar::bench {

class PromptMaker {
 public:
  // `tokenizer` may be null; it must outlive the maker.
  PromptMaker(const Tokenizer* tokenizer, uint64_t seed);

  // Text for request `index` of `tokens` tokens (> 0). Under the tokenizer (without special
  // tokens) it encodes to exactly `tokens` ids.
  std::string make(int64_t tokens, int index) const;

 private:
  const Tokenizer* tokenizer_;
  uint64_t seed_;
  std::vector<std::string> words_;       // " word" pieces
  std::vector<int64_t> word_tokens_;     // their token counts under the tokenizer (1 without)
  std::vector<size_t> single_tokens_;    // words that are one token
};

}  // namespace realizar::bench
