// The streaming tensor writer shared by convert, quantize and synth: tensors are produced and
// encoded a chunk of rows at a time, rows spread over the thread pool, and appended in order.
#include <algorithm>

#include "realizar/convert.h"
#include "realizar/error.h"
#include "realizar/quant.h"
#include "util/progress.h"
#include "util/thread_pool.h"

namespace realizar {
namespace {

constexpr int64_t kChunkElements = int64_t{16} << 20;  // 64 MiB as float32
constexpr int64_t kScratchElements = int64_t{1} << 18;  // per-thread float rows, 1 MiB

void check_plan(const TensorPlan& plan) {
  if (!plan.rows) fail("{}: no row source", plan.name);
  if (!can_quantize(plan.type)) {
    fail("{}: cannot encode tensors as {}", plan.name, tensor_type_name(plan.type));
  }
}

// Produces rows [first, first + count) of `plan`, encoded, into `out` (count * row bytes).
void encode_rows(const TensorPlan& plan, int64_t first, int64_t count, uint8_t* out,
                 std::vector<float>& scratch) {
  const int64_t ne0 = static_cast<int64_t>(plan.dims[0]);
  const uint64_t bytes_per_row = row_bytes(plan.type, plan.dims[0]);
  const int64_t batch = std::max<int64_t>(1, kScratchElements / ne0);
  scratch.resize(static_cast<size_t>(std::min(batch, count) * ne0));
  for (int64_t row = first; row < first + count; row += batch) {
    const int64_t n = std::min(batch, first + count - row);
    plan.rows(row, n, scratch.data());
    for (int64_t i = 0; i < n; ++i) {
      quantize_row(plan.type, scratch.data() + i * ne0, out + (row - first + i) * bytes_per_row,
                   ne0);
    }
  }
}

uint64_t encoded_bytes(const TensorPlan& plan) {
  return row_bytes(plan.type, plan.dims[0]) * static_cast<uint64_t>(plan.row_count());
}

void write_tensor_data(gguf::Writer& writer, const TensorPlan& plan, ThreadPool& pool,
                       std::vector<std::vector<float>>& scratch, Progress& progress) {
  const int64_t rows = plan.row_count();
  const int64_t ne0 = static_cast<int64_t>(plan.dims[0]);
  const uint64_t bytes_per_row = row_bytes(plan.type, plan.dims[0]);
  const int64_t chunk_rows = std::clamp<int64_t>(kChunkElements / ne0, 1, rows);
  std::vector<uint8_t> encoded(static_cast<size_t>(chunk_rows * bytes_per_row));
  writer.begin_tensor(plan.name);
  for (int64_t first = 0; first < rows; first += chunk_rows) {
    const int64_t count = std::min(chunk_rows, rows - first);
    pool.parallel_for(count, [&](int64_t begin, int64_t end, int thread) {
      encode_rows(plan, first + begin, end - begin, encoded.data() + begin * bytes_per_row,
                  scratch[static_cast<size_t>(thread)]);
    });
    writer.append({encoded.data(), static_cast<size_t>(count * bytes_per_row)});
    progress.advance(static_cast<uint64_t>(count) * bytes_per_row);
  }
  writer.end_tensor();
}

}  // namespace

int64_t TensorPlan::row_count() const {
  int64_t rows = 1;
  for (size_t i = 1; i < dims.size(); ++i) rows *= static_cast<int64_t>(dims[i]);
  return rows;
}

void write_tensors(gguf::Writer& writer, std::vector<TensorPlan> plans, ThreadPool& pool) {
  uint64_t total = 0;
  for (const TensorPlan& plan : plans) {
    check_plan(plan);
    writer.add_tensor(plan.name, plan.type, plan.dims);
    total += encoded_bytes(plan);
  }
  writer.write_header();
  std::vector<std::vector<float>> scratch(static_cast<size_t>(pool.size()));
  // Bytes of tensor data written (produced and encoded on the way): the slow part of convert,
  // quantize and synth.
  Progress progress("writing " + writer.path().filename().string(), total, Progress::Unit::Bytes);
  for (const TensorPlan& plan : plans) write_tensor_data(writer, plan, pool, scratch, progress);
  progress.finish();
  writer.finish();
}

void set_file_type_metadata(gguf::Writer& writer, QuantScheme scheme) {
  writer.set("general.file_type", gguf::Value(llama_file_type(scheme)));
  writer.set("general.quantization_version", gguf::Value(uint32_t{2}));
}

}  // namespace realizar
