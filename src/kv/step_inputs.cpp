#include "kv/step_inputs.h"

#include <algorithm>

#include "realizar/error.h"

namespace realizar {

StepLayout::StepLayout(int64_t max_tokens, int64_t max_tiles, int64_t table_capacity) {
  tokens = 0;
  positions = tokens + max_tokens;
  slots = positions + max_tokens;
  seq_rows = slots + max_tokens;
  out_rows = seq_rows + max_tokens;
  decode_tokens = out_rows + max_tokens;
  tiles = (decode_tokens + max_tokens + 3) / 4 * 4;  // 16-byte aligned: a tile is one int4 load
  stride = tiles + kTileFields * max_tiles;
  tables = stride + 4;  // keeps the tables 16-byte aligned
  total = tables + table_capacity;
}

namespace {

const QueryTiling& checked(const QueryTiling& tiling) {
  if (tiling.min_run < 0 || (tiling.min_run > 0 && tiling.tile_tokens < 1)) {
    fail("query tiling: runs of {} tokens cut into tiles of {} is not a tiling", tiling.min_run, tiling.tile_tokens);
  }
  return tiling;
}

}  // namespace

StepPacker::StepPacker(int64_t max_tokens, int64_t table_capacity, QueryTiling tiling)
    : max_tokens_(max_tokens), tiling_(checked(tiling)), layout_(max_tokens, tiling_.max_tiles(max_tokens), table_capacity) {}

// Row of `seq_id` among the step's sequences, added if new. Batches group a sequence's tokens,
// so the newest row is tried first; a full scan otherwise (steps hold few sequences).
int32_t StepPacker::row_of(int32_t seq_id) {
  if (!sequences_.empty() && sequences_.back() == seq_id) return static_cast<int32_t>(sequences_.size() - 1);
  const auto it = std::find(sequences_.begin(), sequences_.end(), seq_id);
  if (it != sequences_.end()) return static_cast<int32_t>(it - sequences_.begin());
  sequences_.push_back(seq_id);
  return static_cast<int32_t>(sequences_.size() - 1);
}

// The decode tokens and tiles of tokens [begin, end), whose seq_rows are already written.
void StepPacker::pack_attention(const Batch& batch, size_t begin, size_t end, int32_t* out, StepShape& shape) const {
  const int64_t max_tiles = tiling_.max_tiles(max_tokens_);
  for (size_t i = begin; i < end;) {
    size_t run_end = i + 1;
    while (run_end < end && batch.seq_ids[run_end] == batch.seq_ids[i] &&
           batch.positions[run_end] == batch.positions[run_end - 1] + 1) {
      ++run_end;
    }
    const auto run = static_cast<int64_t>(run_end - i);
    if (tiling_.min_run > 0 && run >= tiling_.min_run) {
      for (size_t first = i; first < run_end; first += static_cast<size_t>(tiling_.tile_tokens)) {
        if (shape.tiles == max_tiles) fail("query tiles of the step exceed their capacity of {}", max_tiles);
        int32_t* tile = out + layout_.tiles + kTileFields * shape.tiles++;
        const auto t = static_cast<int64_t>(first - begin);
        tile[0] = static_cast<int32_t>(t);
        tile[1] = static_cast<int32_t>(std::min<int64_t>(tiling_.tile_tokens, static_cast<int64_t>(run_end - first)));
        tile[2] = out[layout_.seq_rows + t];
        tile[3] = batch.positions[first];
      }
      shape.tile_max_length = std::max<int64_t>(shape.tile_max_length, batch.positions[run_end - 1] + 1);
    } else {
      for (size_t k = i; k < run_end; ++k) {
        out[layout_.decode_tokens + shape.decode_tokens++] = static_cast<int32_t>(k - begin);
        shape.decode_max_length = std::max<int64_t>(shape.decode_max_length, batch.positions[k] + 1);
      }
    }
    i = run_end;
  }
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
  pack_attention(batch, begin, end, out, shape);
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
