#include "kv/block_table.h"

#include "realizar/error.h"

namespace realizar {

KvBlockTable::KvBlockTable(int64_t block_count, int64_t block_size)
    : block_count_(block_count), block_size_(block_size) {
  if (block_count <= 0 || block_size <= 0) {
    fail("KV cache needs a positive block count and size (got {} x {})", block_count, block_size);
  }
  free_.reserve(static_cast<size_t>(block_count));
  for (int64_t b = block_count - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
}

void KvBlockTable::reserve(int32_t seq_id, int64_t length) {
  Sequence& seq = sequences_[seq_id];
  const int64_t needed = (length + block_size_ - 1) / block_size_;
  const int64_t missing = needed - static_cast<int64_t>(seq.blocks.size());
  if (missing > free_block_count()) {
    if (seq.blocks.empty() && seq.length == 0) sequences_.erase(seq_id);
    fail("KV cache full: sequence {} needs {} more blocks of {} tokens, {} are free", seq_id,
         missing, block_size_, free_block_count());
  }
  for (int64_t i = 0; i < missing; ++i) {
    seq.blocks.push_back(free_.back());
    free_.pop_back();
  }
}

void KvBlockTable::set_length(int32_t seq_id, int64_t length) {
  Sequence& seq = sequences_.at(seq_id);
  if (length > static_cast<int64_t>(seq.blocks.size()) * block_size_) {
    fail("sequence {}: length {} exceeds its reserved cache", seq_id, length);
  }
  seq.length = length;
}

int64_t KvBlockTable::length(int32_t seq_id) const {
  auto it = sequences_.find(seq_id);
  return it == sequences_.end() ? 0 : it->second.length;
}

int64_t KvBlockTable::slot(int32_t seq_id, int64_t position) const {
  const Sequence& seq = sequences_.at(seq_id);
  return static_cast<int64_t>(seq.blocks.at(static_cast<size_t>(position / block_size_))) *
             block_size_ +
         position % block_size_;
}

const std::vector<int32_t>& KvBlockTable::blocks(int32_t seq_id) const {
  static const std::vector<int32_t> none;
  auto it = sequences_.find(seq_id);
  return it == sequences_.end() ? none : it->second.blocks;
}

void KvBlockTable::release(int32_t seq_id) {
  auto it = sequences_.find(seq_id);
  if (it == sequences_.end()) return;
  for (auto b = it->second.blocks.rbegin(); b != it->second.blocks.rend(); ++b) free_.push_back(*b);
  sequences_.erase(it);
}

}  // namespace realizar
