// Paged KV cache bookkeeping (vLLM's PagedAttention, Kwon et al. 2023, arXiv:2309.06180): the
// cache is a pool of fixed-size blocks of `block_size` token slots; each sequence owns a list of
// blocks (its block table), so sequences grow without reserving their maximum length up front
// and give their blocks back when they end. Backends own the storage; slot s of the pool is
// element range [s * kv_dim, (s + 1) * kv_dim) of each layer's K and V arrays.
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

namespace realizar {

class KvBlockTable {
 public:
  KvBlockTable(int64_t block_count, int64_t block_size);

  // Makes room for `seq_id` to hold `length` tokens, taking blocks from the free pool. Throws
  // realizar::Error ("KV cache full") when the pool runs out; the sequence is then unchanged.
  void reserve(int32_t seq_id, int64_t length);

  // Records that `seq_id` now holds `length` tokens (at most what was reserved).
  void set_length(int32_t seq_id, int64_t length);
  int64_t length(int32_t seq_id) const;

  // Pool slot of token `position` of `seq_id` (the position must be reserved).
  int64_t slot(int32_t seq_id, int64_t position) const;

  // The sequence's blocks in order (empty for an unknown sequence).
  const std::vector<int32_t>& blocks(int32_t seq_id) const;

  void release(int32_t seq_id);

  int64_t block_size() const { return block_size_; }
  int64_t block_count() const { return block_count_; }
  int64_t free_block_count() const { return static_cast<int64_t>(free_.size()); }
  int64_t slot_count() const { return block_count_ * block_size_; }

 private:
  struct Sequence {
    std::vector<int32_t> blocks;
    int64_t length = 0;
  };
  int64_t block_count_;
  int64_t block_size_;
  std::vector<int32_t> free_;  // a stack: recently freed blocks are reused first
  std::unordered_map<int32_t, Sequence> sequences_;
};

}  // namespace realizar
