// Paged KV cache bookkeeping: block tables, slot mapping and batch validation.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>

#include "kv/batch_slots.h"
#include "kv/block_table.h"
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

}  // namespace
}  // namespace realizar
