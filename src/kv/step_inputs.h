// The per-step inputs a GPU backend hands its kernels, packed into one int32 buffer so that a
// step needs a single host-to-device copy: token ids, positions, cache slots, each token's
// sequence row, the rows whose logits are wanted, and the block tables of the step's sequences.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "kv/kv_manager.h"
#include "realizar/backend.h"

namespace realizar {

// Offsets (in int32 elements) of the arrays in the buffer, for steps of at most `max_tokens`
// tokens and block tables of at most `table_capacity` entries in all.
struct StepLayout {
  int64_t tokens, positions, slots, seq_rows, out_rows, stride, tables, total;
  StepLayout(int64_t max_tokens, int64_t table_capacity);
};

// What a packed step holds.
struct StepShape {
  int64_t tokens = 0;      // tokens in the step
  int64_t outputs = 0;     // of which want logits
  int64_t max_length = 0;  // longest sequence after the step (keys attended to)
  int64_t used = 0;        // int32 elements written from the buffer's start
};

// Packs steps into a buffer laid out by its StepLayout. Reuses its scratch: once the largest
// step has been seen, pack() does not allocate.
class StepPacker {
 public:
  StepPacker(int64_t max_tokens, int64_t table_capacity)
      : max_tokens_(max_tokens), layout_(max_tokens, table_capacity) {}
  const StepLayout& layout() const { return layout_; }

  // Writes tokens [begin, end) of `batch` (at most max_tokens of them; more throw
  // realizar::Error) into `out`
  // (layout().total elements): for step token t, its token id, position, cache slot slots[begin
  // + t] (as the KV manager placed them), and seq_rows[t], the row of its sequence in the
  // tables array; out_rows lists the step tokens whose logits are wanted, in order; `stride` is
  // the row length of the tables array (the longest block list of the step's sequences), and
  // row r holds the blocks of the r-th distinct sequence of the step (unused entries 0).
  StepShape pack(const Batch& batch, std::span<const int64_t> slots, size_t begin, size_t end,
                 const KvManager& kv, int32_t* out);

 private:
  int32_t row_of(int32_t seq_id);

  int64_t max_tokens_;
  StepLayout layout_;
  std::vector<int32_t> sequences_;  // distinct sequences of the step, in order of appearance
};

}  // namespace realizar
