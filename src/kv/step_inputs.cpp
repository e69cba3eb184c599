#include "kv/step_inputs.h"

#include <algorithm>

#include "realizar/error.h"

namespace realizar {

StepLayout::StepLayout(int64_t max_tokens, int64_t table_capacity) {
  tokens = 0;
  positions = tokens + max_tokens;
  slots = positions + max_tokens;
  seq_rows = slots + max_tokens;
  out_rows = seq_rows + max_tokens;
  stride = out_rows + max_tokens;
  tables = stride + 4;  // keeps the tables 16-byte aligned
  total = tables + table_capacity;
}

// Row of `seq_id` among the step's sequences, added if new. Batches group a sequence's tokens,
// so the newest row is tried first; a full scan otherwise (steps hold few sequences).
int32_t StepPacker::row_of(int32_t seq_id) {
  if (!sequences_.empty() && sequences_.back() == seq_id) return static_cast<int32_t>(sequences_.size() - 1);
  const auto it = std::find(sequences_.begin(), sequences_.end(), seq_id);
  if (it != sequences_.end()) return static_cast<int32_t>(it - sequences_.begin());
  sequences_.push_back(seq_id);
  return static_cast<int32_t>(sequences_.size() - 1);
}

StepShape StepPacker::pack(const Batch& batch, std::span<const int64_t> slots, size_t begin,
                           size_t end, const KvManager& kv, int32_t* out) {
  StepShape shape;
  shape.tokens = static_cast<int64_t>(end - begin);
  if (end < begin || end > batch.size() || shape.tokens > max_tokens_) {
    fail("step of tokens [{}, {}) does not fit a batch of {} and steps of {}", begin, end,
         batch.size(), max_tokens_);
  }
  sequences_.clear();
  for (size_t i = begin; i < end; ++i) {
    const int64_t t = static_cast<int64_t>(i - begin);
    out[layout_.tokens + t] = batch.tokens[i];
    out[layout_.positions + t] = batch.positions[i];
    out[layout_.slots + t] = static_cast<int32_t>(slots[i]);
    out[layout_.seq_rows + t] = row_of(batch.seq_ids[i]);
    if (batch.want_logits[i]) out[layout_.out_rows + shape.outputs++] = static_cast<int32_t>(t);
    shape.max_length = std::max<int64_t>(shape.max_length, batch.positions[i] + 1);
  }
  int64_t stride = 1;
  for (const int32_t seq : sequences_) {
    stride = std::max<int64_t>(stride, static_cast<int64_t>(kv.blocks(seq).size()));
  }
  shape.used = layout_.tables + static_cast<int64_t>(sequences_.size()) * stride;
  if (shape.used > layout_.total) fail("block tables of the step exceed their capacity");
  out[layout_.stride] = static_cast<int32_t>(stride);
  int32_t* tables = out + layout_.tables;
  for (size_t s = 0; s < sequences_.size(); ++s) {
    const std::span<const int32_t> blocks = kv.blocks(sequences_[s]);
    int32_t* row = tables + static_cast<int64_t>(s) * stride;
    std::copy(blocks.begin(), blocks.end(), row);
    std::fill(row + blocks.size(), row + stride, 0);
  }
  return shape;
}

}  // namespace realizar
