// Paged KV cache bookkeeping: block tables, slot mapping and batch validation.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>

#include "kv/batch_slots.h"
#include "kv/block_table.h"
#include "kv/step_inputs.h"
#include "realizar/error.h"

namespace realizar {
namespace {

using ::testing::HasSubstr;

std::string error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(KvBlockTable, SequencesGrowBlockByBlockAndMapPositionsToDistinctSlots) {
  KvBlockTable table(8, 4);
  table.reserve(1, 6);  // two blocks
  table.reserve(2, 3);  // one block
  EXPECT_EQ(table.blocks(1).size(), 2u);
  EXPECT_EQ(table.blocks(2).size(), 1u);
  EXPECT_EQ(table.free_block_count(), 5);
  std::set<int64_t> slots;
  for (int64_t p = 0; p < 6; ++p) slots.insert(table.slot(1, p));
  for (int64_t p = 0; p < 3; ++p) slots.insert(table.slot(2, p));
  EXPECT_EQ(slots.size(), 9u);
  // Positions inside one block are consecutive slots of that block.
  EXPECT_EQ(table.slot(1, 5), table.blocks(1)[1] * 4 + 1);
}

TEST(KvBlockTable, ReleasedBlocksAreReused) {
  KvBlockTable table(2, 4);
  table.reserve(1, 8);
  EXPECT_EQ(table.free_block_count(), 0);
  table.release(1);
  EXPECT_EQ(table.free_block_count(), 2);
  table.reserve(2, 8);
  EXPECT_EQ(table.blocks(2).size(), 2u);
  EXPECT_EQ(table.length(1), 0);
}

TEST(KvBlockTable, FullCacheIsAnErrorThatLeavesTheSequenceUsable) {
  KvBlockTable table(2, 4);
  table.reserve(1, 4);
  table.set_length(1, 4);
  EXPECT_THAT(error_of([&] { table.reserve(1, 20); }), HasSubstr("KV cache full"));
  EXPECT_EQ(table.blocks(1).size(), 1u);
  EXPECT_EQ(table.length(1), 4);
  EXPECT_NO_THROW(table.reserve(1, 8));
}

TEST(BatchSlots, InterleavedSequencesContinueTheirOwnCaches) {
  KvBlockTable table(8, 4);
  Batch batch;
  batch.add(10, 0, 1, false);
  batch.add(20, 0, 2, false);
  batch.add(11, 1, 1, true);
  batch.add(21, 1, 2, true);
  std::vector<int64_t> slots;
  assign_batch_slots(table, batch, 100, slots);
  ASSERT_EQ(slots.size(), 4u);
  EXPECT_EQ(slots[0], table.slot(1, 0));
  EXPECT_EQ(slots[2], table.slot(1, 1));
  EXPECT_EQ(slots[3], table.slot(2, 1));
  EXPECT_EQ(table.length(1), 2);
  EXPECT_EQ(table.length(2), 2);

  batch.clear();
  batch.add(12, 2, 1, true);
  assign_batch_slots(table, batch, 100, slots);
  EXPECT_EQ(slots, std::vector<int64_t>{table.slot(1, 2)});
}

TEST(BatchSlots, BadPositionsAndTokensAreRejectedBeforeAnythingChanges) {
  KvBlockTable table(8, 4);
  std::vector<int64_t> slots;
  Batch gap;
  gap.add(1, 0, 1, true);
  gap.add(2, 2, 1, true);
  EXPECT_THAT(error_of([&] { assign_batch_slots(table, gap, 100, slots); }),
              HasSubstr("position 2 does not continue its cache (expected 1)"));
  EXPECT_EQ(table.length(1), 0);

  Batch bad_token;
  bad_token.add(100, 0, 1, true);
  EXPECT_THAT(error_of([&] { assign_batch_slots(table, bad_token, 100, slots); }),
              HasSubstr("token id 100 is outside the vocabulary (size 100)"));
  EXPECT_EQ(table.length(1), 0);
}

// A step of interleaved sequences packed as the GPU kernels read it: every token's fields in
// order, one table row per distinct sequence in order of appearance, rows padded to the longest.
TEST(StepPacker, PacksTokensSequenceRowsOutputsAndBlockTables) {
  KvBlockTable table(16, 4);
  std::vector<int64_t> slots;
  Batch prompt;
  for (int32_t p = 0; p < 9; ++p) prompt.add(100 + p, p, 7, false);  // sequence 7: 3 blocks
  assign_batch_slots(table, prompt, 1000, slots);
  Batch batch;
  batch.add(1, 9, 7, true);
  batch.add(2, 0, 3, false);
  batch.add(3, 1, 3, true);
  batch.add(4, 10, 7, false);
  batch.add(5, 0, 5, true);
  assign_batch_slots(table, batch, 1000, slots);

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
    const std::vector<int32_t>& blocks = table.blocks(sequences[r]);
    for (int32_t b = 0; b < stride; ++b) {
      const int32_t expected = b < static_cast<int32_t>(blocks.size()) ? blocks[b] : 0;
      EXPECT_EQ(out[l.tables + r * stride + b], expected) << "row " << r << " entry " << b;
    }
  }
  // Each token's slot lies in the block its table row names for its position.
  for (int64_t t = 0; t < 5; ++t) {
    const int32_t block = out[l.tables + out[l.seq_rows + t] * stride + out[l.positions + t] / 4];
    EXPECT_EQ(out[l.slots + t], block * 4 + out[l.positions + t] % 4) << "token " << t;
  }
}

TEST(StepPacker, PacksASubrangeAndRejectsStepsOverItsSize) {
  KvBlockTable table(16, 4);
  std::vector<int64_t> slots;
  Batch batch;
  for (int32_t p = 0; p < 6; ++p) batch.add(10 + p, p, 1, p == 5);
  assign_batch_slots(table, batch, 1000, slots);
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

}  // namespace
}  // namespace realizar
