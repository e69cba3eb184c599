#include "realizar/tensor_type.h"

#include <gtest/gtest.h>

#include "realizar/error.h"

namespace realizar {
namespace {

TEST(TensorType, KnownLayoutsMatchGgml) {
  EXPECT_EQ(tensor_type_info(TensorType::Q4_K).block_bytes, 144u);
  EXPECT_EQ(tensor_type_info(TensorType::Q6_K).block_bytes, 210u);
  EXPECT_EQ(tensor_type_info(TensorType::Q8_0).block_size, 32u);
  EXPECT_EQ(tensor_type_info(TensorType::BF16).block_bytes, 2u);
}

TEST(TensorType, RemovedAndUnknownIdsAreRejected) {
  EXPECT_FALSE(tensor_type_info(4u).has_value());
  EXPECT_FALSE(tensor_type_info(31u).has_value());
  EXPECT_FALSE(tensor_type_info(1000u).has_value());
}

TEST(TensorType, NamesRoundTrip) {
  EXPECT_EQ(tensor_type_from_name("q4_k"), TensorType::Q4_K);
  EXPECT_EQ(tensor_type_name(TensorType::Q5_0), "Q5_0");
  EXPECT_FALSE(tensor_type_from_name("q4_k_m").has_value());
}

TEST(TensorType, RowBytesRequiresWholeBlocks) {
  EXPECT_EQ(row_bytes(TensorType::Q4_K, 512), 288u);
  EXPECT_EQ(row_bytes(TensorType::F16, 3), 6u);
  try {
    row_bytes(TensorType::Q4_K, 896);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a multiple"), std::string::npos);
  }
}

}  // namespace
}  // namespace realizar
