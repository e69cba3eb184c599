// The one interface every backend implements (DESIGN.md §1): run a batch of tokens from one or
// more sequences through the model, keeping each sequence's keys and values in a paged KV cache.
// Single-sequence decode is a batch of one token; prefill is a batch of many.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "realizar/model.h"

namespace realizar {

// Tokens to run, each with its sequence, its position in that sequence and whether its logits
// are wanted (like llama.cpp's llama_batch).
struct Batch {
  std::vector<int32_t> tokens;
  std::vector<int32_t> positions;
  std::vector<int32_t> seq_ids;
  std::vector<uint8_t> want_logits;

  void add(int32_t token, int32_t position, int32_t seq_id, bool logits) {
    tokens.push_back(token);
    positions.push_back(position);
    seq_ids.push_back(seq_id);
    want_logits.push_back(logits ? 1 : 0);
  }
  size_t size() const { return tokens.size(); }
  size_t output_count() const;
  void clear();
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string_view name() const = 0;
  virtual const ModelConfig& config() const = 0;

  // Runs every token of `batch`, appending its key and value to its sequence's cache, and fills
  // `logits` with [batch.output_count() x vocab_size] floats, one row per token whose logits are
  // wanted, in batch order. A sequence's tokens must come in order and continue its cache
  // (position == tokens cached so far). Throws realizar::Error when a token id is out of the
  // vocabulary, positions do not continue the cache, or the cache has no room left.
  virtual void forward(const Batch& batch, std::vector<float>& logits) = 0;

  // Runs `batch` as forward() does and fills `tokens` with the greedy choice for each row whose
  // logits are wanted (greedy_token, sampling.h: the largest logit, the lowest id among equal
  // ones), in batch order. The logits stay inside the backend: a GPU backend hands back one id
  // per row. Throws as forward() does, and realizar::Error when a row's logits hold a NaN or are
  // all -inf. The default runs forward() and picks on the host.
  virtual void forward_greedy(const Batch& batch, std::vector<int32_t>& tokens);

  // Frees the cache blocks of `seq_id` (no-op for an unknown sequence).
  virtual void release_sequence(int32_t seq_id) = 0;

  // Tokens `seq_id` holds in the cache.
  virtual int64_t sequence_length(int32_t seq_id) const = 0;
};

}  // namespace realizar
