#include <algorithm>

#include "realizar/backend.h"

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

}  // namespace realizar
