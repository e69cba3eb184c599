#include <algorithm>

#include "realizar/backend.h"
#include "realizar/sampling.h"

namespace realizar {

size_t Batch::output_count() const {
  return static_cast<size_t>(std::count(want_logits.begin(), want_logits.end(), uint8_t{1}));
}

void Batch::clear() {
  tokens.clear();
  positions.clear();
  seq_ids.clear();
  want_logits.clear();
}

void Backend::forward_greedy(const Batch& batch, std::vector<int32_t>& tokens) {
  std::vector<float> logits;
  forward(batch, logits);
  const auto vocab = static_cast<size_t>(config().vocab_size);
  tokens.resize(batch.output_count());
  for (size_t row = 0; row < tokens.size(); ++row) {
    tokens[row] = greedy_token(std::span<const float>(logits).subspan(row * vocab, vocab));
  }
}

}  // namespace realizar
