#include "engine/batch_runner.h"

#include <algorithm>

#include "kv/batch_slots.h"
#include "realizar/error.h"

namespace realizar {

BatchRunner::BatchRunner(Backend& backend)
    : backend_(backend),
      kv_(backend.cache_slots() / kKvBlockSize, kKvBlockSize, /*prefix_caching=*/false) {}

template <class Run>
void BatchRunner::run(const Batch& batch, const Run& step) {
  copies_.clear();
  place_batch(kv_, batch, backend_.config().vocab_size, slots_, copies_);
  try {
    if (!copies_.empty()) backend_.copy_blocks(copies_);
    step(KvStep{kv_, slots_});
  } catch (...) {
    for (const int32_t seq : batch.seq_ids) kv_.truncate(seq, kv_.length(seq));  // give the room back
    throw;
  }
  commit_batch(kv_, batch);
}

void BatchRunner::forward(const Batch& batch, std::vector<float>& logits) {
  run(batch, [&](const KvStep& cache) { backend_.forward(batch, cache, logits); });
}

void BatchRunner::sample(const Batch& batch, std::span<const RowSampling> rows, std::vector<SampledToken>& out) {
  run(batch, [&](const KvStep& cache) { backend_.sample(batch, cache, rows, out); });
}

void BatchRunner::greedy(const Batch& batch, std::vector<int32_t>& tokens) {
  RowSampling row;
  row.params.temperature = 0;
  greedy_rows_.assign(batch.output_count(), row);
  sample(batch, greedy_rows_, sampled_);
  tokens.resize(sampled_.size());
  for (size_t r = 0; r < sampled_.size(); ++r) {
    if (!sampled_[r].error.empty()) fail("output row {}: {}", r, sampled_[r].error);
    tokens[r] = sampled_[r].token;
  }
}

}  // namespace realizar
