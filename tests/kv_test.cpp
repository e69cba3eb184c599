// The KV manager (block tables, slot mapping, prefix cache, copy-on-write), batch placement and
// the GPU step packer.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <numeric>
#include <set>

#include "kv/batch_slots.h"
#include "kv/kv_manager.h"
#include "kv/step_inputs.h"
#include "realizar/error.h"
#include "test_support.h"

namespace realizar {
namespace {

using ::testing::HasSubstr;

using realizar::testing::error_of;

std::vector<BlockCopy> no_copies;

// place_batch with a vocabulary of 1000; copy-on-write copies are not expected.
void place(KvManager& kv, const Batch& batch, std::vector<int64_t>& slots) {
  std::vector<BlockCopy> copies;
  place_batch(kv, batch, 1000, slots, copies);
  ASSERT_TRUE(copies.empty());
}

std::vector<int32_t> iota_tokens(int32_t first, int count) {
  std::vector<int32_t> t(static_cast<size_t>(count));
  std::iota(t.begin(), t.end(), first);
  return t;
}

// Reserves and commits `tokens` after what `seq` holds.
void append(KvManager& kv, int32_t seq, const std::vector<int32_t>& tokens) {
  std::vector<BlockCopy> copies;
  ASSERT_TRUE(kv.reserve(seq, kv.length(seq) + static_cast<int64_t>(tokens.size()), copies));
  ASSERT_TRUE(copies.empty());
  kv.commit(seq, tokens);
}

TEST(KvManager, SequencesGrowBlockByBlockAndMapPositionsToDistinctSlots) {
  KvManager kv(8, 4);
  append(kv, 1, iota_tokens(0, 6));  // two blocks
  append(kv, 2, iota_tokens(0, 3));  // one block
  EXPECT_EQ(kv.blocks(1).size(), 2u);
  EXPECT_EQ(kv.blocks(2).size(), 1u);
  EXPECT_EQ(kv.free_block_count(), 5);
  EXPECT_EQ(kv.used_block_count(), 3);
  std::set<int64_t> slots;
  for (int64_t p = 0; p < 6; ++p) slots.insert(kv.slot(1, p));
  for (int64_t p = 0; p < 3; ++p) slots.insert(kv.slot(2, p));
  EXPECT_EQ(slots.size(), 9u);
  // Positions inside one block are consecutive slots of that block.
  EXPECT_EQ(kv.slot(1, 5), kv.blocks(1)[1] * 4 + 1);
  EXPECT_EQ(kv.length(1), 6);
}

TEST(KvManager, ReserveMakesRoomWithoutChangingTheLengthAndFailsWholeWhenThePoolIsShort) {
  KvManager kv(2, 4);
  EXPECT_EQ(kv.blocks_needed(1, 5), 2);
  EXPECT_TRUE(kv.reserve(1, 5, no_copies));
  EXPECT_EQ(kv.length(1), 0);
  EXPECT_EQ(kv.free_block_count(), 0);
  EXPECT_FALSE(kv.reserve(2, 1, no_copies));
  EXPECT_FALSE(kv.contains(2));
  EXPECT_FALSE(kv.reserve(1, 9, no_copies));
  EXPECT_EQ(kv.blocks(1).size(), 2u);
  EXPECT_THAT(error_of([&] { kv.commit(1, iota_tokens(0, 9)); }), HasSubstr("past its reserved room"));
  kv.commit(1, iota_tokens(0, 5));
  EXPECT_EQ(kv.length(1), 5);
}

TEST(KvManager, ReleasedBlocksAreReused) {
  KvManager kv(2, 4, false);
  append(kv, 1, iota_tokens(0, 8));
  EXPECT_EQ(kv.free_block_count(), 0);
  kv.release(1);
  EXPECT_EQ(kv.free_block_count(), 2);
  EXPECT_EQ(kv.length(1), 0);
  append(kv, 2, iota_tokens(0, 8));
  EXPECT_EQ(kv.blocks(2).size(), 2u);
}

TEST(KvManager, TruncateDropsTokensAndTheRoomPastThem) {
  KvManager kv(8, 4);
  append(kv, 1, iota_tokens(0, 10));
  ASSERT_TRUE(kv.reserve(1, 20, no_copies));  // room for 20, 10 held
  EXPECT_EQ(kv.used_block_count(), 5);
  kv.truncate(1, kv.length(1));  // gives back the uncommitted room
  EXPECT_EQ(kv.used_block_count(), 3);
  kv.truncate(1, 5);
  EXPECT_EQ(kv.length(1), 5);
  EXPECT_EQ(kv.blocks(1).size(), 2u);
  append(kv, 1, iota_tokens(50, 3));  // continues at position 5, in its own second block
  EXPECT_EQ(kv.length(1), 8);
}

// The prefix cache hands a new sequence the blocks an earlier one filled with the same tokens,
// never the last token (whose logits are needed), and never a block whose tokens differ.
TEST(KvManager, PrefixCacheAttachesFullBlocksOfTheSamePrefix) {
  KvManager kv(16, 4);
  const std::vector<int32_t> prompt = iota_tokens(100, 11);  // 2 full blocks + 3
  append(kv, 1, prompt);
  const std::vector<int32_t> first_two(kv.blocks(1).begin(), kv.blocks(1).begin() + 2);
  kv.release(1);
  EXPECT_EQ(kv.cached_block_count(), 2);  // the two full blocks, not the partial third

  std::vector<int32_t> longer = prompt;
  longer.push_back(7);
  EXPECT_EQ(kv.attach_cached_prefix(2, longer), 8);
  EXPECT_EQ(std::vector<int32_t>(kv.blocks(2).begin(), kv.blocks(2).end()), first_two);
  EXPECT_EQ(kv.length(2), 8);
  EXPECT_EQ(kv.cached_block_count(), 0);  // held again

  // Exactly 8 tokens: at most 7 can come from the cache, so only the first block.
  EXPECT_EQ(kv.attach_cached_prefix(3, std::vector<int32_t>(prompt.begin(), prompt.begin() + 8)), 4);
  EXPECT_EQ(kv.blocks(3)[0], first_two[0]);

  // A different second block: only the first matches.
  std::vector<int32_t> other = prompt;
  other[5] = 999;
  EXPECT_EQ(kv.attach_cached_prefix(4, other), 4);
  // A different first block: nothing, and the sequence is not created.
  other[0] = 999;
  EXPECT_EQ(kv.attach_cached_prefix(5, other), 0);
  EXPECT_FALSE(kv.contains(5));
}

TEST(KvManager, CachedBlocksAreEvictedLeastRecentlyFreedFirstAndOnlyWhenNeeded) {
  KvManager kv(4, 4);
  append(kv, 1, iota_tokens(0, 8));    // blocks a, b
  append(kv, 2, iota_tokens(50, 8));   // blocks c, d
  kv.release(1);
  kv.release(2);
  EXPECT_EQ(kv.cached_block_count(), 4);
  EXPECT_EQ(kv.free_block_count(), 4);
  // A new sequence needing one block takes the least recently freed cached one: sequence 1's
  // tail (freed before its head, and before sequence 2).
  append(kv, 3, iota_tokens(900, 4));
  EXPECT_EQ(kv.cached_block_count(), 3);
  std::vector<int32_t> probe = iota_tokens(0, 8);
  probe.push_back(1);
  EXPECT_EQ(kv.attach_cached_prefix(4, probe), 4);  // head still cached, tail evicted
  std::vector<int32_t> second = iota_tokens(50, 8);
  second.push_back(1);
  EXPECT_EQ(kv.attach_cached_prefix(5, second), 8);
}

TEST(KvManager, ForkSharesBlocksAndCopiesTheSharedPartialBlockOnWrite) {
  KvManager kv(8, 4);
  append(kv, 1, iota_tokens(0, 6));  // one full block and a partial one
  kv.fork(1, 2);
  EXPECT_EQ(kv.length(2), 6);
  EXPECT_EQ(std::vector<int32_t>(kv.blocks(2).begin(), kv.blocks(2).end()),
            std::vector<int32_t>(kv.blocks(1).begin(), kv.blocks(1).end()));
  EXPECT_EQ(kv.used_block_count(), 2);
  EXPECT_EQ(kv.blocks_needed(2, 7), 1);  // the copy
  std::vector<BlockCopy> copies;
  ASSERT_TRUE(kv.reserve(2, 7, copies));
  ASSERT_EQ(copies.size(), 1u);
  EXPECT_EQ(copies[0].from, kv.blocks(1)[1]);
  EXPECT_EQ(copies[0].to, kv.blocks(2)[1]);
  EXPECT_NE(kv.blocks(2)[1], kv.blocks(1)[1]);
  EXPECT_EQ(kv.blocks(2)[0], kv.blocks(1)[0]);  // the full block stays shared
  kv.commit(2, std::vector<int32_t>{77});
  // The parent now holds its partial block alone: it writes in place.
  copies.clear();
  ASSERT_TRUE(kv.reserve(1, 7, copies));
  EXPECT_TRUE(copies.empty());
  EXPECT_THAT(error_of([&] { kv.fork(1, 2); }), HasSubstr("existing sequence 2"));
}

TEST(KvManager, WritingIntoACachedBlockAfterTruncationCopiesItWhenShared) {
  KvManager kv(8, 4);
  append(kv, 1, iota_tokens(0, 8));
  std::vector<int32_t> probe = iota_tokens(0, 8);
  probe.push_back(0);
  EXPECT_EQ(kv.attach_cached_prefix(2, probe), 8);  // shares both blocks
  kv.truncate(2, 6);  // now ends inside a block sequence 1 also holds
  std::vector<BlockCopy> copies;
  ASSERT_TRUE(kv.reserve(2, 7, copies));
  ASSERT_EQ(copies.size(), 1u);
  EXPECT_EQ(copies[0].from, kv.blocks(1)[1]);
  // Alone in a cached block: truncation takes it out of the cache, so it is written in place.
  kv.release(2);
  kv.truncate(1, 6);
  copies.clear();
  ASSERT_TRUE(kv.reserve(1, 7, copies));
  EXPECT_TRUE(copies.empty());
  kv.commit(1, std::vector<int32_t>{42});
  EXPECT_EQ(kv.attach_cached_prefix(3, probe), 4);  // the rewritten block is no longer found
}

TEST(BatchSlots, InterleavedSequencesContinueTheirOwnCaches) {
  KvManager kv(8, 4, false);
  Batch batch;
  batch.add(10, 0, 1, false);
  batch.add(20, 0, 2, false);
  batch.add(11, 1, 1, true);
  batch.add(21, 1, 2, true);
  std::vector<int64_t> slots;
  place(kv, batch, slots);
  ASSERT_EQ(slots.size(), 4u);
  EXPECT_EQ(slots[0], kv.slot(1, 0));
  EXPECT_EQ(slots[2], kv.slot(1, 1));
  EXPECT_EQ(slots[3], kv.slot(2, 1));
  EXPECT_EQ(kv.length(1), 0);  // placed, not yet committed
  commit_batch(kv, batch);
  EXPECT_EQ(kv.length(1), 2);
  EXPECT_EQ(kv.length(2), 2);

  batch.clear();
  batch.add(12, 2, 1, true);
  place(kv, batch, slots);
  EXPECT_EQ(slots, std::vector<int64_t>{kv.slot(1, 2)});
}

TEST(BatchSlots, BadPositionsTokensAndAFullPoolAreRejectedBeforeAnythingChanges) {
  KvManager kv(2, 4, false);
  std::vector<int64_t> slots;
  std::vector<BlockCopy> copies;
  Batch gap;
  gap.add(1, 0, 1, true);
  gap.add(2, 2, 1, true);
  EXPECT_THAT(error_of([&] { place_batch(kv, gap, 100, slots, copies); }),
              HasSubstr("position 2 does not continue its cache (expected 1)"));
  Batch bad_token;
  bad_token.add(100, 0, 1, true);
  EXPECT_THAT(error_of([&] { place_batch(kv, bad_token, 100, slots, copies); }),
              HasSubstr("token id 100 is outside the vocabulary (size 100)"));
  Batch too_long;
  for (int32_t p = 0; p < 5; ++p) too_long.add(1, p, 1, false);
  for (int32_t p = 0; p < 4; ++p) too_long.add(1, p, 2, false);
  EXPECT_THAT(error_of([&] { place_batch(kv, too_long, 100, slots, copies); }), HasSubstr("KV cache full"));
  EXPECT_EQ(kv.free_block_count(), 2);
  EXPECT_FALSE(kv.contains(1));
}

// A step of interleaved sequences packed as the GPU kernels read it: every token's fields in
// order, one table row per distinct sequence in order of appearance, rows padded to the longest.
TEST(StepPacker, PacksTokensSequenceRowsOutputsAndBlockTables) {
  KvManager table(16, 4, false);
  std::vector<int64_t> slots;
  Batch prompt;
  for (int32_t p = 0; p < 9; ++p) prompt.add(100 + p, p, 7, false);  // sequence 7: 3 blocks
  place(table, prompt, slots);
  commit_batch(table, prompt);
  Batch batch;
  batch.add(1, 9, 7, true);
  batch.add(2, 0, 3, false);
  batch.add(3, 1, 3, true);
  batch.add(4, 10, 7, false);
  batch.add(5, 0, 5, true);
  place(table, batch, slots);

  StepPacker packer(8, 8 * table.block_count());
  const StepLayout& l = packer.layout();
  std::vector<int32_t> out(static_cast<size_t>(l.total), -1);
  const StepShape shape = packer.pack(batch, slots, 0, batch.size(), table, out.data());

  EXPECT_EQ(shape.tokens, 5);
  EXPECT_EQ(shape.outputs, 3);
  EXPECT_EQ(shape.max_length, 11);
  const std::vector<int32_t> rows = {0, 1, 1, 0, 2};  // sequences 7, 3, 5 in order of appearance
  for (int64_t t = 0; t < 5; ++t) {
    EXPECT_EQ(out[l.tokens + t], batch.tokens[t]);
    EXPECT_EQ(out[l.positions + t], batch.positions[t]);
    EXPECT_EQ(out[l.slots + t], slots[t]);
    EXPECT_EQ(out[l.seq_rows + t], rows[t]) << "token " << t;
  }
  EXPECT_EQ(std::vector<int32_t>(out.begin() + l.out_rows, out.begin() + l.out_rows + 3),
            (std::vector<int32_t>{0, 2, 4}));
  const int32_t stride = out[l.stride];
  EXPECT_EQ(stride, 3);  // sequence 7 holds 11 tokens: 3 blocks of 4
  EXPECT_EQ(shape.used, l.tables + 3 * stride);
  const int32_t sequences[] = {7, 3, 5};
  for (int r = 0; r < 3; ++r) {
    const std::span<const int32_t> blocks = table.blocks(sequences[r]);
    for (int32_t b = 0; b < stride; ++b) {
      const int32_t expected = b < static_cast<int32_t>(blocks.size()) ? blocks[b] : 0;
      EXPECT_EQ(out[l.tables + r * stride + b], expected) << "row " << r << " entry " << b;
    }
  }
  // Each token's slot lies in the block its table row names for its position (sequence 7 holds 11
  // tokens once the batch is committed).
  for (int64_t t = 0; t < 5; ++t) {
    const int32_t block = out[l.tables + out[l.seq_rows + t] * stride + out[l.positions + t] / 4];
    EXPECT_EQ(out[l.slots + t], block * 4 + out[l.positions + t] % 4) << "token " << t;
  }
}

TEST(StepPacker, PacksASubrangeAndRejectsStepsOverItsSize) {
  KvManager table(16, 4, false);
  std::vector<int64_t> slots;
  Batch batch;
  for (int32_t p = 0; p < 6; ++p) batch.add(10 + p, p, 1, p == 5);
  place(table, batch, slots);
  StepPacker packer(4, 4 * table.block_count());
  std::vector<int32_t> out(static_cast<size_t>(packer.layout().total));
  const StepShape second = packer.pack(batch, slots, 4, 6, table, out.data());
  EXPECT_EQ(second.tokens, 2);
  EXPECT_EQ(second.outputs, 1);
  EXPECT_EQ(out[packer.layout().tokens], 14);
  EXPECT_EQ(out[packer.layout().out_rows], 1);  // token 5 is the step's second
  EXPECT_EQ(second.max_length, 6);
  EXPECT_THAT(error_of([&] { packer.pack(batch, slots, 0, 6, table, out.data()); }),
              HasSubstr("does not fit"));
}

// Runs of at least min_run consecutive tokens of one sequence become tiles of tile_tokens (the
// last one shorter) with their table row and first position; every other token is a decode token:
// a run broken by another sequence, a sequence's run shorter than min_run, a single decode row.
TEST(StepPacker, CutsPromptRunsIntoQueryTilesAndListsTheOtherTokens) {
  KvManager table(32, 4, false);
  std::vector<int64_t> slots;
  Batch prompt;
  for (int32_t p = 0; p < 9; ++p) prompt.add(100 + p, p, 7, false);  // sequence 7 holds 9 tokens
  place(table, prompt, slots);
  commit_batch(table, prompt);
  Batch batch;
  batch.add(1, 9, 7, true);                                   // decode row of sequence 7
  for (int32_t p = 0; p < 7; ++p) batch.add(10 + p, p, 3, false);  // run of 7: tiles of 3, 3, 1
  for (int32_t p = 0; p < 3; ++p) batch.add(20 + p, p, 5, true);   // run of 3 < 4: decode tokens
  for (int32_t p = 0; p < 4; ++p) batch.add(30 + p, p, 8, p == 3);  // run of exactly 4: one tile of 3, one of 1
  batch.add(40, 3, 5, true);  // sequence 5 again, after another sequence: its own run of 1
  place(table, batch, slots);

  StepPacker packer(16, 16 * table.block_count(), QueryTiling{4, 3});
  const StepLayout& l = packer.layout();
  EXPECT_EQ(l.tiles % 4, 0);  // 16-byte aligned
  std::vector<int32_t> out(static_cast<size_t>(l.total), -1);
  const StepShape shape = packer.pack(batch, slots, 0, batch.size(), table, out.data());

  EXPECT_EQ(shape.tokens, 16);
  EXPECT_EQ(shape.decode_tokens, 5);
  EXPECT_EQ(std::vector<int32_t>(out.begin() + l.decode_tokens, out.begin() + l.decode_tokens + 5),
            (std::vector<int32_t>{0, 8, 9, 10, 15}));
  EXPECT_EQ(shape.decode_max_length, 10);  // sequence 7's decode row at position 9
  ASSERT_EQ(shape.tiles, 5);
  // {first step token, tokens, table row, first position}; rows: sequences 7, 3, 5, 8.
  const std::vector<std::vector<int32_t>> tiles = {{1, 3, 1, 0}, {4, 3, 1, 3}, {7, 1, 1, 6}, {11, 3, 3, 0}, {14, 1, 3, 3}};
  for (int64_t k = 0; k < shape.tiles; ++k) {
    const auto at = out.begin() + l.tiles + kTileFields * k;
    EXPECT_EQ(std::vector<int32_t>(at, at + kTileFields), tiles[static_cast<size_t>(k)]) << "tile " << k;
  }
  EXPECT_EQ(shape.tile_max_length, 7);  // sequence 3's last token at position 6
  // Each tile's tokens are consecutive positions of the row's sequence, as the kernel assumes.
  for (int64_t k = 0; k < shape.tiles; ++k) {
    const int32_t* tile = out.data() + l.tiles + kTileFields * k;
    for (int32_t j = 0; j < tile[1]; ++j) {
      EXPECT_EQ(out[l.positions + tile[0] + j], tile[3] + j);
      EXPECT_EQ(out[l.seq_rows + tile[0] + j], tile[2]);
    }
  }
  // The layout has room for the most tiles a step of 16 tokens can make: four runs of 4, each cut
  // into 3 + 1.
  Batch worst;
  for (int32_t seq = 20; seq < 24; ++seq) {
    for (int32_t p = 0; p < 4; ++p) worst.add(p, p, seq, false);
  }
  place(table, worst, slots);
  const StepShape most = packer.pack(worst, slots, 0, worst.size(), table, out.data());
  EXPECT_EQ(most.tiles, 8);
  EXPECT_EQ(most.decode_tokens, 0);
}

TEST(StepPacker, WithoutTilingEveryTokenIsADecodeTokenAndBadTilingsAreRejected) {
  KvManager table(16, 4, false);
  std::vector<int64_t> slots;
  Batch batch;
  for (int32_t p = 0; p < 6; ++p) batch.add(10 + p, p, 1, p == 5);
  place(table, batch, slots);
  StepPacker packer(8, 8 * table.block_count());
  std::vector<int32_t> out(static_cast<size_t>(packer.layout().total));
  const StepShape shape = packer.pack(batch, slots, 0, 6, table, out.data());
  EXPECT_EQ(shape.tiles, 0);
  EXPECT_EQ(shape.decode_tokens, 6);
  EXPECT_EQ(shape.decode_max_length, 6);
  EXPECT_EQ(out[packer.layout().decode_tokens + 5], 5);
  EXPECT_THAT(error_of([] { StepPacker(8, 8, QueryTiling{16, 0}); }), HasSubstr("is not a tiling"));
}

}  // namespace
}  // namespace realizar
