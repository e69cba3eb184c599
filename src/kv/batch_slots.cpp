#include "kv/batch_slots.h"

#include <algorithm>
#include <utility>

#include "realizar/error.h"

namespace realizar {
namespace {

// Each sequence of the batch with the length it reaches, in order of first appearance. A batch
// holds few sequences, so a linear search beats hashing; the list keeps its capacity.
std::vector<std::pair<int32_t, int64_t>>& batch_sequences(const KvManager& kv, const Batch& batch,
                                                          int64_t vocab_size) {
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
      next_position.emplace_back(seq, kv.length(seq));
      it = next_position.end() - 1;
    }
    if (batch.positions[i] != it->second) {
      fail("sequence {}: position {} does not continue its cache (expected {})", seq,
           batch.positions[i], it->second);
    }
    ++it->second;
  }
  return next_position;
}

}  // namespace

void place_batch(KvManager& kv, const Batch& batch, int64_t vocab_size, std::vector<int64_t>& slots,
                 std::vector<BlockCopy>& copies) {
  const auto& sequences = batch_sequences(kv, batch, vocab_size);
  int64_t needed = 0;
  for (const auto& [seq, length] : sequences) needed += kv.blocks_needed(seq, length);
  if (needed > kv.free_block_count()) {
    fail("KV cache full: the batch needs {} more blocks of {} tokens, {} are free", needed,
         kv.block_size(), kv.free_block_count());
  }
  for (const auto& [seq, length] : sequences) kv.reserve(seq, length, copies);
  slots_of(kv, batch, slots);
}

void slots_of(const KvManager& kv, const Batch& batch, std::vector<int64_t>& slots) {
  slots.resize(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) slots[i] = kv.slot(batch.seq_ids[i], batch.positions[i]);
}

void commit_batch(KvManager& kv, const Batch& batch) {
  thread_local std::vector<int32_t> tokens;
  thread_local std::vector<int32_t> done;  // sequences committed
  done.clear();
  for (size_t i = 0; i < batch.size(); ++i) {
    const int32_t seq = batch.seq_ids[i];
    if (std::find(done.begin(), done.end(), seq) != done.end()) continue;
    done.push_back(seq);
    tokens.clear();
    for (size_t j = i; j < batch.size(); ++j) {
      if (batch.seq_ids[j] == seq) tokens.push_back(batch.tokens[j]);
    }
    kv.commit(seq, tokens);
  }
}

}  // namespace realizar
