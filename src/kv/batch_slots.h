// Places a batch's tokens in the paged KV cache, and commits them once the step has run: what a
// caller that lays out batches itself (tests, `apr bench`, perplexity) does around a backend step.
// The engine's scheduler reserves room for its own steps and uses slots_of() and commit_batch().
#pragma once

#include <cstdint>
#include <vector>

#include "kv/kv_manager.h"
#include "realizar/backend.h"

namespace realizar {

// Checks that token ids are in [0, vocab_size) and that each sequence's positions continue what
// it holds one by one, reserves the room the batch needs (copy-on-write copies appended to
// `copies`) and fills `slots` with each token's pool slot. Throws realizar::Error otherwise
// ("KV cache full" when the pool runs out), leaving every sequence as it was.
void place_batch(KvManager& kv, const Batch& batch, int64_t vocab_size, std::vector<int64_t>& slots,
                 std::vector<BlockCopy>& copies);

// `slots[i]` = pool slot of batch token i, whose position must be reserved.
void slots_of(const KvManager& kv, const Batch& batch, std::vector<int64_t>& slots);

// Records the batch's tokens as held by their sequences (after the step succeeded).
void commit_batch(KvManager& kv, const Batch& batch);

}  // namespace realizar
