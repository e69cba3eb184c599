#include "parallel/shard_weights.h"

#include <cstring>

#include "realizar/error.h"
#include "realizar/tensor_type.h"

namespace realizar::parallel {
namespace {

void check_range(IndexRange range, int64_t extent, const char* what) {
  if (range.size() <= 0) fail("{} [{}, {}) are empty", what, range.begin, range.end);
  if (range.begin < 0 || range.end > extent) {
    fail("{} [{}, {}) are outside the tensor's {} {}", what, range.begin, range.end, extent, what);
  }
}

// Throws unless both ends of `range` (elements of a row) fall on block boundaries of `type`.
void check_block_boundaries(TensorType type, IndexRange range, const char* what) {
  const int64_t block = tensor_type_info(type).block_size;
  if (range.begin % block != 0 || range.end % block != 0) {
    fail("{} [{}, {}) of a {} tensor cut its {}-element blocks", what, range.begin, range.end,
         tensor_type_name(type), block);
  }
}

}  // namespace

WeightTensor row_view(const WeightTensor& t, IndexRange rows) {
  check_range(rows, t.rows, "rows");
  WeightTensor view = t;
  view.rows = rows.size();
  view.data = t.row(rows.begin);
  return view;
}

WeightTensor element_view(const WeightTensor& t, IndexRange elements) {
  if (t.rows != 1) fail("element_view: the tensor has {} rows, not one (a vector)", t.rows);
  check_range(elements, t.cols, "elements");
  check_block_boundaries(t.type, elements, "elements");
  WeightTensor view = t;
  view.cols = elements.size();
  view.data = t.data + row_bytes(t.type, static_cast<uint64_t>(elements.begin));
  view.row_bytes = row_bytes(t.type, static_cast<uint64_t>(elements.size()));
  return view;
}

ColumnCopy column_copy(const WeightTensor& t, IndexRange cols) {
  check_range(cols, t.cols, "columns");
  check_block_boundaries(t.type, cols, "columns");
  const size_t offset = row_bytes(t.type, static_cast<uint64_t>(cols.begin));
  const size_t width = row_bytes(t.type, static_cast<uint64_t>(cols.size()));
  ColumnCopy copy;
  copy.bytes.resize(width * static_cast<size_t>(t.rows));
  for (int64_t r = 0; r < t.rows; ++r) {
    std::memcpy(copy.bytes.data() + static_cast<size_t>(r) * width, t.row(r) + offset, width);
  }
  copy.tensor = WeightTensor{t.type, cols.size(), t.rows, copy.bytes.data(), width};
  return copy;
}

RankWeights shard_weights(const TensorParallelPlan& plan, const ModelConfig& config,
                          const ModelWeights& weights, int rank) {
  RankWeights out{rank_config(config, plan, rank), weights, {}};
  for_each_weight(out.weights, [&](const std::string&, WeightRole role, WeightTensor& t) {
    switch (split_kind(role)) {
      case SplitKind::Replicated:
        return;
      case SplitKind::Rows: {
        const IndexRange range = split_range(plan, role, rank);
        t = is_vector(role) ? element_view(t, range) : row_view(t, range);
        return;
      }
      case SplitKind::Columns:
        out.column_copies.push_back(column_copy(t, split_range(plan, role, rank)));
        t = out.column_copies.back().tensor;
        return;
      case SplitKind::AfterReduce:
        t = WeightTensor{};  // added once, after the partial outputs are summed
        return;
    }
    fail("unknown split kind {}", static_cast<int>(split_kind(role)));
  });
  return out;
}

}  // namespace realizar::parallel
