// The per-step inputs a GPU backend hands its kernels, packed into one int32 buffer so that a
// step needs a single host-to-device copy: token ids, positions, cache slots, each token's
// sequence row, the rows whose logits are wanted, how the step's attention is divided (tokens that
// attend one by one, query tiles of prompt chunks) and the block tables of the step's sequences.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "kv/kv_manager.h"
#include "realizar/backend.h"

namespace realizar {

// How the packer groups a step's tokens for attention. A run of at least `min_run` consecutive
// step tokens of one sequence at consecutive positions (a prompt chunk) is cut into query tiles of
// `tile_tokens` tokens from its start (the last one shorter); every other token is a decode token
// (attends on its own). min_run = 0: no tiles. A run of L tokens makes ceil(L / tile_tokens) tiles,
// at most L / tile_tokens + L / min_run, which bounds a step's tile count (max_tiles).
struct QueryTiling {
  int64_t min_run = 0;
  int64_t tile_tokens = 0;
  int64_t max_tiles(int64_t max_tokens) const {
    return min_run > 0 ? max_tokens / tile_tokens + max_tokens / min_run + 1 : 0;
  }
};

// Fields of a tile in the buffer (int32, 16-byte aligned): first step token, token count, the
// sequence's row of the tables array, the first token's position.
constexpr int64_t kTileFields = 4;

// Offsets (in int32 elements) of the arrays in the buffer, for steps of at most `max_tokens`
// tokens, at most `max_tiles` tiles and block tables of at most `table_capacity` entries in all.
struct StepLayout {
  int64_t tokens, positions, slots, seq_rows, out_rows, decode_tokens, tiles, stride, tables, total;
  StepLayout(int64_t max_tokens, int64_t max_tiles, int64_t table_capacity);
};

// What a packed step holds.
struct StepShape {
  int64_t tokens = 0;             // tokens in the step
  int64_t outputs = 0;            // of which want logits
  int64_t max_length = 0;         // longest sequence after the step (keys attended to)
  int64_t decode_tokens = 0;      // tokens that attend on their own
  int64_t decode_max_length = 0;  // the most keys one of them sees (its position + 1)
  int64_t tiles = 0;              // query tiles
  int64_t tile_max_length = 0;    // the most keys a tile's last token sees
  int64_t used = 0;               // int32 elements written from the buffer's start
};

// Packs steps into a buffer laid out by its StepLayout. Reuses its scratch: once the largest
// step has been seen, pack() does not allocate.
class StepPacker {
 public:
  // Throws realizar::Error when `tiling` has min_run > 0 and tile_tokens < 1.
  StepPacker(int64_t max_tokens, int64_t table_capacity, QueryTiling tiling = {});
  const StepLayout& layout() const { return layout_; }
  const QueryTiling& tiling() const { return tiling_; }

  // Writes tokens [begin, end) of `batch` (at most max_tokens of them; more throw
  // realizar::Error) into `out` (layout().total elements): for step token t, its token id,
  // position, cache slot slots[begin + t] (as the KV manager placed them), and seq_rows[t], the
  // row of its sequence in the tables array; out_rows lists the step tokens whose logits are
  // wanted, in order; decode_tokens the step tokens outside tiles, in order; tiles the query tiles
  // (QueryTiling, kTileFields each) in step order; `stride` is the row length of the tables array
  // (the longest block list of the step's sequences), and row r holds the blocks of the r-th
  // distinct sequence of the step (unused entries 0).
  StepShape pack(const Batch& batch, std::span<const int64_t> slots, size_t begin, size_t end,
                 const KvManager& kv, int32_t* out);

 private:
  int32_t row_of(int32_t seq_id);
  void pack_attention(const Batch& batch, size_t begin, size_t end, int32_t* out, StepShape& shape) const;

  int64_t max_tokens_;
  QueryTiling tiling_;
  StepLayout layout_;
  std::vector<int32_t> sequences_;  // distinct sequences of the step, in order of appearance
};

}  // namespace realizar
