#include "kv/kv_manager.h"

#include <algorithm>
#include <iterator>

#include "realizar/error.h"

namespace realizar {
namespace {

// splitmix64's finalizer (Steele, Lea, Flood 2014): a cheap, well-mixing 64-bit permutation.
uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

constexpr uint64_t kFirstParentHash = 0x6A09E667F3BCC908ull;

}  // namespace

KvManager::KvManager(int64_t block_count, int64_t block_size, bool prefix_caching)
    : block_size_(block_size), prefix_caching_(prefix_caching) {
  if (block_count <= 0 || block_size <= 0) {
    fail("KV cache needs a positive block count and size (got {} x {})", block_count, block_size);
  }
  blocks_.resize(static_cast<size_t>(block_count));
  block_token_ids_.resize(static_cast<size_t>(block_count * block_size));
  free_.reserve(static_cast<size_t>(block_count));
  for (int64_t b = block_count - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
}

uint64_t KvManager::chain_hash(uint64_t parent_hash, std::span<const int32_t> tokens) {
  uint64_t h = mix64(parent_hash);
  for (const int32_t token : tokens) h = mix64(h ^ static_cast<uint32_t>(token));
  return h;
}

const KvManager::Sequence& KvManager::sequence(int32_t seq) const {
  const auto it = sequences_.find(seq);
  if (it == sequences_.end()) fail("KV cache: unknown sequence {}", seq);
  return it->second;
}

int64_t KvManager::length(int32_t seq) const {
  const auto it = sequences_.find(seq);
  return it == sequences_.end() ? 0 : static_cast<int64_t>(it->second.tokens.size());
}

std::span<const int32_t> KvManager::blocks(int32_t seq) const {
  const auto it = sequences_.find(seq);
  if (it == sequences_.end()) return {};
  return it->second.blocks;
}

int64_t KvManager::slot(int32_t seq, int64_t position) const {
  const Sequence& s = sequence(seq);
  const auto index = static_cast<size_t>(position / block_size_);
  if (position < 0 || index >= s.blocks.size()) fail("KV cache: position {} of sequence {} is not reserved", position, seq);
  return static_cast<int64_t>(s.blocks[index]) * block_size_ + position % block_size_;
}

std::span<const int32_t> KvManager::block_tokens(int32_t block) const {
  return std::span<const int32_t>(block_token_ids_).subspan(static_cast<size_t>(block * block_size_),
                                                            static_cast<size_t>(block_size_));
}

bool KvManager::writable(int32_t block) const {
  const Block& b = blocks_[static_cast<size_t>(block)];
  return b.references == 1 && !b.cached;
}

int64_t KvManager::blocks_needed(int32_t seq, int64_t length) const {
  const auto it = sequences_.find(seq);
  const int64_t held_blocks = it == sequences_.end() ? 0 : static_cast<int64_t>(it->second.blocks.size());
  const int64_t held_tokens = it == sequences_.end() ? 0 : static_cast<int64_t>(it->second.tokens.size());
  const int64_t fresh = std::max<int64_t>(0, (length + block_size_ - 1) / block_size_ - held_blocks);
  const bool copy = length > held_tokens && held_tokens % block_size_ != 0 &&
                    !writable(it->second.blocks[static_cast<size_t>(held_tokens / block_size_)]);
  return fresh + (copy ? 1 : 0);
}

bool KvManager::reserve(int32_t seq, int64_t length, std::vector<BlockCopy>& copies) {
  if (blocks_needed(seq, length) > free_block_count()) return false;
  Sequence& s = sequences_[seq];
  const int64_t held = static_cast<int64_t>(s.tokens.size());
  if (length > held && held % block_size_ != 0) {
    int32_t& partial = s.blocks[static_cast<size_t>(held / block_size_)];
    if (!writable(partial)) {
      const int32_t copy = take_block();
      copies.push_back({partial, copy});
      drop_reference(partial);
      partial = copy;
    }
  }
  while (static_cast<int64_t>(s.blocks.size()) * block_size_ < length) s.blocks.push_back(take_block());
  return true;
}

void KvManager::commit(int32_t seq, std::span<const int32_t> tokens) {
  const auto it = sequences_.find(seq);
  if (it == sequences_.end()) fail("KV cache: commit to unknown sequence {}", seq);
  Sequence& s = it->second;
  if (static_cast<int64_t>(s.tokens.size() + tokens.size()) > static_cast<int64_t>(s.blocks.size()) * block_size_) {
    fail("KV cache: sequence {} commits {} tokens past its reserved room", seq, tokens.size());
  }
  s.tokens.insert(s.tokens.end(), tokens.begin(), tokens.end());
  register_full_blocks(s);
}

// Gives each block the commit has filled its chained hash and, with prefix caching, enters it in
// the cache unless an equal block (same tokens after the same prefix) is already there.
void KvManager::register_full_blocks(Sequence& s) {
  const size_t full = s.tokens.size() / static_cast<size_t>(block_size_);
  for (size_t i = s.full_hashes.size(); i < full; ++i) {
    const std::span<const int32_t> tokens =
        std::span<const int32_t>(s.tokens).subspan(i * static_cast<size_t>(block_size_), static_cast<size_t>(block_size_));
    const uint64_t hash = chain_hash(i == 0 ? kFirstParentHash : s.full_hashes[i - 1], tokens);
    s.full_hashes.push_back(hash);
    const int32_t id = s.blocks[i];
    Block& b = blocks_[static_cast<size_t>(id)];
    if (!prefix_caching_ || b.cached || cached_.count(hash) != 0) continue;
    cached_.emplace(hash, id);
    b.cached = true;
    b.hash = hash;
    b.parent = i == 0 ? -1 : s.blocks[i - 1];
    std::copy(tokens.begin(), tokens.end(), block_token_ids_.begin() + static_cast<std::ptrdiff_t>(id * block_size_));
  }
}

void KvManager::truncate(int32_t seq, int64_t length) {
  const auto it = sequences_.find(seq);
  if (it == sequences_.end()) return;
  Sequence& s = it->second;
  const int64_t kept = std::clamp<int64_t>(length, 0, static_cast<int64_t>(s.tokens.size()));
  s.tokens.resize(static_cast<size_t>(kept));
  s.full_hashes.resize(static_cast<size_t>(kept / block_size_));
  const size_t kept_blocks = static_cast<size_t>((kept + block_size_ - 1) / block_size_);
  while (s.blocks.size() > kept_blocks) {
    drop_reference(s.blocks.back());
    s.blocks.pop_back();
  }
  // A cached block that becomes partial will be written again: it leaves the cache if this
  // sequence alone holds it (a shared one is copied on the next write instead).
  if (kept % block_size_ != 0) {
    const int32_t last = s.blocks.back();
    Block& b = blocks_[static_cast<size_t>(last)];
    if (b.cached && b.references == 1) {
      cached_.erase(b.hash);
      b.cached = false;
    }
  }
}

void KvManager::fork(int32_t parent, int32_t child) {
  if (contains(child)) fail("KV cache: fork into existing sequence {}", child);
  Sequence copy = sequence(parent);
  copy.blocks.resize((copy.tokens.size() + static_cast<size_t>(block_size_) - 1) / static_cast<size_t>(block_size_));
  for (const int32_t b : copy.blocks) ++blocks_[static_cast<size_t>(b)].references;
  sequences_.emplace(child, std::move(copy));
}

void KvManager::release(int32_t seq) {
  const auto it = sequences_.find(seq);
  if (it == sequences_.end()) return;
  // Last block first: the LRU then evicts a sequence's tail before its head, which more later
  // prompts share.
  for (auto b = it->second.blocks.rbegin(); b != it->second.blocks.rend(); ++b) drop_reference(*b);
  sequences_.erase(it);
}

int64_t KvManager::attach_cached_prefix(int32_t seq, std::span<const int32_t> prompt) {
  if (contains(seq)) fail("KV cache: prefix lookup for existing sequence {}", seq);
  if (!prefix_caching_ || prompt.empty()) return 0;
  const size_t max_blocks = (prompt.size() - 1) / static_cast<size_t>(block_size_);
  std::vector<int32_t> found;
  std::vector<uint64_t> hashes;
  uint64_t hash = kFirstParentHash;
  for (size_t i = 0; i < max_blocks; ++i) {
    const std::span<const int32_t> tokens =
        prompt.subspan(i * static_cast<size_t>(block_size_), static_cast<size_t>(block_size_));
    hash = chain_hash(hash, tokens);
    const auto it = cached_.find(hash);
    if (it == cached_.end()) break;
    const Block& b = blocks_[static_cast<size_t>(it->second)];
    const bool same_parent = b.parent == (found.empty() ? -1 : found.back());
    const std::span<const int32_t> cached_tokens = block_tokens(it->second);
    if (!same_parent || !std::equal(tokens.begin(), tokens.end(), cached_tokens.begin())) break;
    found.push_back(it->second);
    hashes.push_back(hash);
  }
  if (found.empty()) return 0;
  for (const int32_t id : found) {
    Block& b = blocks_[static_cast<size_t>(id)];
    if (b.references++ == 0) lru_.erase(b.lru_position);
  }
  Sequence& s = sequences_[seq];
  s.blocks = found;
  s.full_hashes = hashes;
  s.tokens.assign(prompt.begin(), prompt.begin() + static_cast<std::ptrdiff_t>(found.size() * static_cast<size_t>(block_size_)));
  return static_cast<int64_t>(s.tokens.size());
}

int32_t KvManager::take_block() {
  int32_t id = -1;
  if (!free_.empty()) {
    id = free_.back();
    free_.pop_back();
  } else if (!lru_.empty()) {  // evict the least recently freed cached block
    id = lru_.front();
    lru_.pop_front();
    Block& b = blocks_[static_cast<size_t>(id)];
    cached_.erase(b.hash);
    b.cached = false;
  } else {
    fail("KV cache: no free block (callers check blocks_needed first)");
  }
  blocks_[static_cast<size_t>(id)].references = 1;
  return id;
}

void KvManager::drop_reference(int32_t id) {
  Block& b = blocks_[static_cast<size_t>(id)];
  if (--b.references > 0) return;
  if (b.cached) {
    lru_.push_back(id);
    b.lru_position = std::prev(lru_.end());
  } else {
    free_.push_back(id);
  }
}

}  // namespace realizar
