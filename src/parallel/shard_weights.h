// A rank's share of the weights, as shard_plan.h splits them. Row splits are views into the
// unsharded tensors (a row is stored whole and rows follow one another, so a row range is one
// contiguous byte range: no copy). Column splits are copies: whole quant blocks of columns are a
// contiguous byte range of each row (ggml blocks never straddle rows), and those ranges of all
// rows are copied row after row into a tensor of their own, in the same type and block layout.
#pragma once

#include <cstdint>
#include <vector>

#include "parallel/shard_plan.h"
#include "realizar/model.h"

namespace realizar::parallel {

// Rows `rows` of matrix `t` as a view (same type, columns and row stride). Throws realizar::Error
// when the range is empty or outside [0, t.rows).
WeightTensor row_view(const WeightTensor& t, IndexRange rows);

// Elements `elements` of vector `t` (a one-row tensor: a bias) as a view. Throws realizar::Error
// when the range is empty, outside [0, t.cols), or starts or ends inside a quant block.
WeightTensor element_view(const WeightTensor& t, IndexRange elements);

// Columns `cols` of every row of matrix `t`, copied: [t.rows x cols.size()] in t's type.
struct ColumnCopy {
  WeightTensor tensor;         // points into `bytes`
  std::vector<uint8_t> bytes;  // tensor.rows rows of tensor.row_bytes bytes

  ColumnCopy() = default;
  ColumnCopy(const ColumnCopy&) = delete;  // a copy's tensor would point into this one's bytes
  ColumnCopy& operator=(const ColumnCopy&) = delete;
  ColumnCopy(ColumnCopy&&) = default;  // moving a vector keeps its buffer: the view stays valid
  ColumnCopy& operator=(ColumnCopy&&) = default;
};

// Throws realizar::Error when the range is empty, outside [0, t.cols), or starts or ends inside a
// quant block of t's type (tensor_type_info(t.type).block_size columns).
ColumnCopy column_copy(const WeightTensor& t, IndexRange cols);

// What rank `rank` runs: its config (rank_config) and its weights, with the biases of O and down
// left out (the all-reduce's caller adds them once); the column copies are owned here. The
// unsharded weights must outlive it (row splits and replicated tensors are views into them).
struct RankWeights {
  ModelConfig config;
  ModelWeights weights;
  std::vector<ColumnCopy> column_copies;
};

RankWeights shard_weights(const TensorParallelPlan& plan, const ModelConfig& config,
                          const ModelWeights& weights, int rank);

}  // namespace realizar::parallel
