// Sharded weights (src/parallel/shard_weights.h) against the scalar dequantizer (src/quant), for
// every tensor type the project reads: a row view dequantizes to those rows of the matrix, a copy
// of whole-block columns dequantizes to those columns of every row, bit for bit; ranges that are
// empty, outside the tensor or inside a quant block are refused by message.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "parallel/shard_weights.h"
#include "realizar/error.h"
#include "realizar/quant.h"
#include "realizar/tensor_type.h"
#include "test_support.h"

namespace realizar::parallel {
namespace {

using ::testing::HasSubstr;

// Every type the scalar dequantizer reads (tensor_type_info knows the ids, can_dequantize says
// which ones are read).
std::vector<TensorType> readable_types() {
  std::vector<TensorType> types;
  for (uint32_t id = 0; id < 64; ++id) {
    if (tensor_type_info(id) && can_dequantize(static_cast<TensorType>(id))) {
      types.push_back(static_cast<TensorType>(id));
    }
  }
  return types;
}

// A matrix of `rows` rows of `blocks` blocks of `type`, with its bytes.
struct Matrix {
  WeightTensor tensor;
  std::vector<uint8_t> bytes;
};

// Random finite values, quantized where the project can encode the type; Q2_K and Q3_K (read
// only) get random bytes with small finite block scales.
Matrix random_matrix(TensorType type, int64_t rows, int64_t blocks, uint32_t seed) {
  const int64_t cols = blocks * tensor_type_info(type).block_size;
  const size_t stride = row_bytes(type, static_cast<uint64_t>(cols));
  Matrix m;
  m.bytes.resize(stride * static_cast<size_t>(rows));
  std::mt19937 rng(seed);
  if (can_quantize(type)) {
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> row(static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows; ++r) {
      for (float& x : row) x = normal(rng);
      quantize_row(type, row.data(), m.bytes.data() + static_cast<size_t>(r) * stride, cols);
    }
  } else {
    for (uint8_t& b : m.bytes) b = static_cast<uint8_t>(rng());
    const ggml_half scale = fp32_to_fp16(0.01f);
    for (int64_t i = 0; i < rows * blocks; ++i) {
      uint8_t* block = m.bytes.data() + static_cast<size_t>(i) * tensor_type_info(type).block_bytes;
      if (type == TensorType::Q2_K) {
        auto* q = reinterpret_cast<block_q2_K*>(block);
        q->d = q->dmin = scale;
      } else if (type == TensorType::Q3_K) {
        reinterpret_cast<block_q3_K*>(block)->d = scale;
      } else {
        ADD_FAILURE() << "no random blocks for " << tensor_type_name(type);
      }
    }
  }
  m.tensor = WeightTensor{type, cols, rows, m.bytes.data(), stride};
  return m;
}

std::vector<float> dequantized(const WeightTensor& t) {
  std::vector<float> out(static_cast<size_t>(t.rows * t.cols));
  for (int64_t r = 0; r < t.rows; ++r) dequantize_row(t.type, t.row(r), out.data() + r * t.cols, t.cols);
  return out;
}

bool same_bits(const float* a, const float* b, int64_t n) {
  return std::memcmp(a, b, static_cast<size_t>(n) * sizeof(float)) == 0;
}

class EveryReadableType : public ::testing::TestWithParam<TensorType> {};

TEST_P(EveryReadableType, RowViewsAreThoseRowsWithoutACopy) {
  const Matrix m = random_matrix(GetParam(), 6, 3, 1);
  const std::vector<float> full = dequantized(m.tensor);
  for (int64_t begin = 0; begin < 6; ++begin) {
    for (int64_t end = begin + 1; end <= 6; ++end) {
      const WeightTensor view = row_view(m.tensor, {begin, end});
      EXPECT_EQ(view.data, m.tensor.row(begin));
      ASSERT_EQ(view.rows, end - begin);
      ASSERT_EQ(view.cols, m.tensor.cols);
      const std::vector<float> got = dequantized(view);
      EXPECT_TRUE(same_bits(got.data(), full.data() + begin * m.tensor.cols, view.rows * view.cols))
          << "rows [" << begin << ", " << end << ")";
    }
  }
}

TEST_P(EveryReadableType, ColumnCopiesOfWholeBlocksAreThoseColumnsOfEveryRow) {
  const TensorType type = GetParam();
  const int64_t blocks = 4, block = tensor_type_info(type).block_size;
  const Matrix m = random_matrix(type, 5, blocks, 2);
  const std::vector<float> full = dequantized(m.tensor);
  for (int64_t first = 0; first < blocks; ++first) {
    for (int64_t last = first + 1; last <= blocks; ++last) {
      const IndexRange cols{first * block, last * block};
      const ColumnCopy copy = column_copy(m.tensor, cols);
      ASSERT_EQ(copy.tensor.rows, 5);
      ASSERT_EQ(copy.tensor.cols, cols.size());
      EXPECT_EQ(copy.tensor.row_bytes, row_bytes(type, static_cast<uint64_t>(cols.size())));
      EXPECT_EQ(copy.tensor.data, copy.bytes.data());
      const std::vector<float> got = dequantized(copy.tensor);
      for (int64_t r = 0; r < 5; ++r) {
        EXPECT_TRUE(same_bits(got.data() + r * cols.size(), full.data() + r * m.tensor.cols + cols.begin,
                              cols.size()))
            << "row " << r << " columns [" << cols.begin << ", " << cols.end << ")";
      }
    }
  }
}

TEST_P(EveryReadableType, ElementViewsOfAVectorAreThoseElements) {
  const TensorType type = GetParam();
  const int64_t block = tensor_type_info(type).block_size;
  const Matrix v = random_matrix(type, 1, 4, 3);
  const std::vector<float> full = dequantized(v.tensor);
  const WeightTensor view = element_view(v.tensor, {block, 3 * block});
  ASSERT_EQ(view.cols, 2 * block);
  const std::vector<float> got = dequantized(view);
  EXPECT_TRUE(same_bits(got.data(), full.data() + block, 2 * block));
}

INSTANTIATE_TEST_SUITE_P(Types, EveryReadableType, ::testing::ValuesIn(readable_types()),
                         [](const auto& info) { return std::string(tensor_type_name(info.param)); });

TEST(ShardWeights, EveryTypeTheDequantizerReadsIsCovered) {
  // The 14 of quant.h: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K, Q8_K.
  EXPECT_EQ(readable_types().size(), 14u);
}

using realizar::testing::error_of;

TEST(ShardWeights, ColumnRangesInsideABlockAreRefused) {
  const Matrix q4k = random_matrix(TensorType::Q4_K, 2, 2, 4);
  EXPECT_EQ(error_of([&] { column_copy(q4k.tensor, {0, 128}); }),
            "columns [0, 128) of a Q4_K tensor cut its 256-element blocks");
  const Matrix q8 = random_matrix(TensorType::Q8_0, 2, 4, 5);
  EXPECT_EQ(error_of([&] { column_copy(q8.tensor, {48, 96}); }),
            "columns [48, 96) of a Q8_0 tensor cut its 32-element blocks");
  EXPECT_EQ(error_of([&] { element_view(q8.tensor, {0, 32}); }),
            "element_view: the tensor has 2 rows, not one (a vector)");
}

TEST(ShardWeights, EmptyAndOutOfRangeRangesAreRefused) {
  const Matrix m = random_matrix(TensorType::F32, 4, 8, 6);
  EXPECT_EQ(error_of([&] { row_view(m.tensor, {2, 5}); }),
            "rows [2, 5) are outside the tensor's 4 rows");
  EXPECT_EQ(error_of([&] { row_view(m.tensor, {3, 3}); }),
            "rows [3, 3) are empty");
  EXPECT_THAT(error_of([&] { column_copy(m.tensor, {-1, 4}); }), HasSubstr("columns [-1, 4) are outside"));
  EXPECT_THAT(error_of([&] { column_copy(m.tensor, {4, 9}); }), HasSubstr("tensor's 8 columns"));
}

}  // namespace
}  // namespace realizar::parallel
