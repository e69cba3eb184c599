// `apr quantize`: GGUF → GGUF under another scheme, one dequantized row at a time.
#include "realizar/convert.h"
#include "realizar/error.h"
#include "realizar/quant.h"
#include "util/thread_pool.h"

namespace realizar {
namespace {

bool is_file_type_key(std::string_view key) {
  return key == "general.file_type" || key == "general.quantization_version";
}

ModelShape model_shape(const gguf::File& file) {
  const std::string arch = file.get_string("general.architecture");
  return {static_cast<int64_t>(file.get_uint(arch + ".block_count")),
          file.find_tensor("output.weight") != nullptr};
}

TensorPlan requantize_plan(const gguf::File& file, const gguf::TensorInfo& info,
                           QuantScheme scheme, const ModelShape& shape) {
  if (!can_dequantize(info.type)) {
    fail("{}: tensor {} has type {}, which cannot be dequantized", file.path().string(), info.name,
         tensor_type_name(info.type));
  }
  const uint8_t* data = file.tensor_data(info);
  const int64_t ne0 = static_cast<int64_t>(info.dims[0]);
  const uint64_t src_row_bytes = row_bytes(info.type, info.dims[0]);
  const TensorType src_type = info.type;
  return {info.name, choose_tensor_type(scheme, info.name, info.dims, shape), info.dims,
          [data, ne0, src_row_bytes, src_type](int64_t first, int64_t count, float* out) {
            for (int64_t r = 0; r < count; ++r) {
              dequantize_row(src_type, data + (first + r) * src_row_bytes, out + r * ne0, ne0);
            }
          }};
}

}  // namespace

void quantize_gguf(const std::filesystem::path& in, const std::filesystem::path& out,
                   QuantScheme scheme, ThreadPool& pool) {
  const gguf::File file = gguf::File::open(in);
  const ModelShape shape = model_shape(file);
  gguf::Writer writer(out, file.version());
  for (const auto& [key, value] : file.metadata()) {
    if (!is_file_type_key(key)) writer.set(key, value);
  }
  set_file_type_metadata(writer, scheme);
  std::vector<TensorPlan> plans;
  for (const gguf::TensorInfo& info : file.tensors()) {
    plans.push_back(requantize_plan(file, info, scheme, shape));
  }
  write_tensors(writer, std::move(plans), pool);
}

}  // namespace realizar
