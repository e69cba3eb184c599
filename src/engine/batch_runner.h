// Runs batches on a backend with a KV manager of its own, for callers that lay out their batches
// themselves (tests, `apr bench`, perplexity): each sequence's tokens continue what it holds,
// position by position. The serving engine's scheduler does the same work for many requests.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "kv/kv_manager.h"
#include "realizar/backend.h"

namespace realizar {

class BatchRunner {
 public:
  // A KV manager over the backend's cache slots, without prefix caching (sequences here are laid
  // out by the caller, who expects every token computed).
  explicit BatchRunner(Backend& backend);

  // Places the batch (place_batch: token ids, positions, room), runs it, commits its tokens.
  // Throws realizar::Error as place_batch and the backend do; a failed step leaves every
  // sequence as it was.
  void forward(const Batch& batch, std::vector<float>& logits);
  void sample(const Batch& batch, std::span<const RowSampling> rows, std::vector<SampledToken>& out);
  // sample() with plain greedy rows; throws realizar::Error when a row has no token.
  void greedy(const Batch& batch, std::vector<int32_t>& tokens);

  void release(int32_t seq) { kv_.release(seq); }
  int64_t length(int32_t seq) const { return kv_.length(seq); }
  KvManager& kv() { return kv_; }
  Backend& backend() { return backend_; }

 private:
  template <class Run>
  void run(const Batch& batch, const Run& step);

  Backend& backend_;
  KvManager kv_;
  std::vector<int64_t> slots_;
  std::vector<BlockCopy> copies_;
  std::vector<RowSampling> greedy_rows_;
  std::vector<SampledToken> sampled_;
};

}  // namespace realizar
