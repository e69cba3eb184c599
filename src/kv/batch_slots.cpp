#include "kv/batch_slots.h"

#include <unordered_map>

#include "realizar/error.h"

namespace realizar {

std::vector<int64_t> assign_batch_slots(KvBlockTable& table, const Batch& batch,
                                        int64_t vocab_size) {
  std::unordered_map<int32_t, int64_t> next_position;
  for (size_t i = 0; i < batch.size(); ++i) {
    const int32_t seq = batch.seq_ids[i];
    if (batch.tokens[i] < 0 || batch.tokens[i] >= vocab_size) {
      fail("token id {} is outside the vocabulary (size {})", batch.tokens[i], vocab_size);
    }
    auto [it, inserted] = next_position.try_emplace(seq, table.length(seq));
    if (batch.positions[i] != it->second) {
      fail("sequence {}: position {} does not continue its cache (expected {})", seq,
           batch.positions[i], it->second);
    }
    ++it->second;
  }
  for (const auto& [seq, length] : next_position) table.reserve(seq, length);
  for (const auto& [seq, length] : next_position) table.set_length(seq, length);

  std::vector<int64_t> slots(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    slots[i] = table.slot(batch.seq_ids[i], batch.positions[i]);
  }
  return slots;
}

}  // namespace realizar
