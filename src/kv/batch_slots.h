// Checks a batch against the sequences in a paged cache and assigns each token its cache slot.
#pragma once

#include <cstdint>
#include <vector>

#include "kv/block_table.h"
#include "realizar/backend.h"

namespace realizar {

// Fills `slots` with, for each token of `batch` in order, the pool slot its key and value go to.
// Checks that token ids are in [0, vocab_size) and that each sequence's positions continue its
// cache one by one; reserves the blocks needed and records the new lengths. Throws
// realizar::Error otherwise (before changing any length). `slots` keeps its capacity between
// calls, so a decode step does not allocate once the largest batch has been seen.
void assign_batch_slots(KvBlockTable& table, const Batch& batch, int64_t vocab_size,
                        std::vector<int64_t>& slots);

}  // namespace realizar
