// The paged KV cache's bookkeeping, one instance per engine (vLLM's PagedAttention, Kwon et al.
// 2023, arXiv:2309.06180): the cache is a pool of fixed-size blocks of `block_size` token slots;
// each sequence holds a list of blocks (its block table), so sequences grow without reserving
// their maximum length and give their blocks back when they end. Backends own only the storage:
// slot s of the pool is element range [s * kv_dim, (s + 1) * kv_dim) of each layer's K and V
// arrays, and the slot of position p of a sequence is blocks[p / block_size] * block_size +
// p % block_size.
//
// Prefix caching (vLLM's automatic prefix caching): a block that a sequence has filled is keyed by
// a hash chained over the token ids of every block before it and its own, and is reference-counted;
// when no sequence holds it any more it stays in an LRU list of cached free blocks, reusable by a
// later sequence that starts with the same tokens, until the pool needs it for something else.
// Lookups compare the tokens and the parent block too, so a hash collision can never attach
// wrong keys.
//
// Writes: a block is written only while one sequence holds it and it is not in the prefix cache;
// otherwise reserve() gives the writer a copy first (copy-on-write: the caller has the backend
// copy the block before the step). Lengths change only by commit() (after a step succeeded) and
// truncate(); reserve() makes room without changing what a sequence holds.
#pragma once

#include <cstdint>
#include <list>
#include <span>
#include <unordered_map>
#include <vector>

namespace realizar {

constexpr int64_t kKvBlockSize = 16;  // token slots per block, for every backend

// Copy block `from`'s slots to block `to` (all layers, keys and values) before the next step.
struct BlockCopy {
  int32_t from;
  int32_t to;
};

class KvManager {
 public:
  // Throws realizar::Error when block_count or block_size is not positive.
  KvManager(int64_t block_count, int64_t block_size = kKvBlockSize, bool prefix_caching = true);

  int64_t block_size() const { return block_size_; }
  int64_t block_count() const { return static_cast<int64_t>(blocks_.size()); }
  int64_t slot_count() const { return block_count() * block_size_; }
  // Blocks an allocation can take now: never used, or free but caching a prefix (evicted then).
  int64_t free_block_count() const { return static_cast<int64_t>(free_.size() + lru_.size()); }
  // Blocks held by at least one sequence.
  int64_t used_block_count() const { return block_count() - free_block_count(); }
  // Free blocks that still hold a cached prefix.
  int64_t cached_block_count() const { return static_cast<int64_t>(lru_.size()); }

  bool contains(int32_t seq) const { return sequences_.count(seq) != 0; }
  // Tokens the sequence holds (0 for an unknown one).
  int64_t length(int32_t seq) const;
  // The sequence's blocks in position order (reserved ones included; empty for an unknown one).
  std::span<const int32_t> blocks(int32_t seq) const;
  // Pool slot of position `position` of `seq` (the position must be reserved).
  int64_t slot(int32_t seq, int64_t position) const;

  // Blocks `seq` must take from the pool to hold `length` tokens (a copy-on-write copy included).
  int64_t blocks_needed(int32_t seq, int64_t length) const;
  // Makes room for `seq` (created if new) to hold `length` tokens: new blocks, and a private copy
  // of a shared or cached block about to be written (appended to `copies`). Returns false and
  // changes nothing when the pool has too few blocks.
  bool reserve(int32_t seq, int64_t length, std::vector<BlockCopy>& copies);
  // Records that `tokens` now fill positions [length, length + tokens.size()) of `seq`, which must
  // be reserved (else realizar::Error). Blocks this fills enter the prefix cache.
  void commit(int32_t seq, std::span<const int32_t> tokens);
  // Keeps the first `length` tokens of `seq` (no-op when it holds fewer); reserved room and
  // blocks past it go back to the pool.
  void truncate(int32_t seq, int64_t length);
  // Makes `child` (a new sequence id, else realizar::Error) hold what `parent` holds, sharing its
  // blocks; the first write into a shared block gets a copy.
  void fork(int32_t parent, int32_t child);
  // Drops the sequence (no-op for an unknown one); its blocks go back to the pool, filled ones to
  // the prefix cache.
  void release(int32_t seq);

  // For a new sequence `seq`: attaches the longest run of cached blocks that starts `prompt`, up to
  // prompt.size() - 1 tokens (the last token must be computed for its logits), and returns how
  // many tokens it now holds (0: nothing attached, the sequence is not created).
  int64_t attach_cached_prefix(int32_t seq, std::span<const int32_t> prompt);

 private:
  struct Block {
    int32_t references = 0;
    bool cached = false;            // registered under `hash` in cached_
    uint64_t hash = 0;              // chained hash of this block's tokens and all before
    int32_t parent = -1;            // the block before it when registered
    std::list<int32_t>::iterator lru_position;  // valid while free and cached
  };
  struct Sequence {
    std::vector<int32_t> blocks;
    std::vector<int32_t> tokens;        // committed tokens
    std::vector<uint64_t> full_hashes;  // chained hash of each full block
  };

  static uint64_t chain_hash(uint64_t parent_hash, std::span<const int32_t> tokens);
  std::span<const int32_t> block_tokens(int32_t block) const;
  bool writable(int32_t block) const;
  int32_t take_block();
  void drop_reference(int32_t block);
  void register_full_blocks(Sequence& seq);
  const Sequence& sequence(int32_t seq) const;

  int64_t block_size_;
  bool prefix_caching_;
  std::vector<Block> blocks_;
  std::vector<int32_t> block_token_ids_;  // tokens of each cached block, block_size per block
  std::vector<int32_t> free_;             // never-used or uncached free blocks (a stack)
  std::list<int32_t> lru_;                // free cached blocks, least recently freed first
  std::unordered_map<uint64_t, int32_t> cached_;  // chained hash -> block
  std::unordered_map<int32_t, Sequence> sequences_;
};

}  // namespace realizar
