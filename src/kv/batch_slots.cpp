#include "kv/batch_slots.h"

#include <algorithm>
#include <utility>

#include "realizar/error.h"

namespace realizar {

void assign_batch_slots(KvBlockTable& table, const Batch& batch, int64_t vocab_size,
                        std::vector<int64_t>& slots) {
  // Next expected position of each sequence in the batch. A batch holds few sequences, so a
  // linear search beats hashing; the scratch list keeps its capacity across calls.
  thread_local std::vector<std::pair<int32_t, int64_t>> next_position;
  next_position.clear();
  for (size_t i = 0; i < batch.size(); ++i) {
    const int32_t seq = batch.seq_ids[i];
    if (batch.tokens[i] < 0 || batch.tokens[i] >= vocab_size) {
      fail("token id {} is outside the vocabulary (size {})", batch.tokens[i], vocab_size);
    }
    auto it = std::find_if(next_position.begin(), next_position.end(),
                           [seq](const auto& entry) { return entry.first == seq; });
    if (it == next_position.end()) {
      next_position.emplace_back(seq, table.length(seq));
      it = next_position.end() - 1;
    }
    if (batch.positions[i] != it->second) {
      fail("sequence {}: position {} does not continue its cache (expected {})", seq,
           batch.positions[i], it->second);
    }
    ++it->second;
  }
  for (const auto& [seq, length] : next_position) table.reserve(seq, length);
  for (const auto& [seq, length] : next_position) table.set_length(seq, length);

  slots.resize(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    slots[i] = table.slot(batch.seq_ids[i], batch.positions[i]);
  }
}

}  // namespace realizar
