// Streaming GGUF writer: the header is built in memory (metadata and tensor infos are small), the
// tensor data goes straight to the file in declaration order.
#include <cerrno>
#include <cstring>
#include <limits>

#include "realizar/error.h"
#include "realizar/gguf.h"

namespace realizar::gguf {
namespace {

constexpr uint64_t kInt64Max = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());

template <typename T>
void put(std::string& out, T value) {
  out.append(reinterpret_cast<const char*>(&value), sizeof(T));
}

void put_string(std::string& out, const std::string& text) {
  put<uint64_t>(out, text.size());
  out += text;
}

void put_value(std::string& out, const Value& value) {
  switch (value.type()) {
    case ValueType::UINT8: return put(out, value.as<uint8_t>());
    case ValueType::INT8: return put(out, value.as<int8_t>());
    case ValueType::UINT16: return put(out, value.as<uint16_t>());
    case ValueType::INT16: return put(out, value.as<int16_t>());
    case ValueType::UINT32: return put(out, value.as<uint32_t>());
    case ValueType::INT32: return put(out, value.as<int32_t>());
    case ValueType::FLOAT32: return put(out, value.as<float>());
    case ValueType::BOOL: return put<uint8_t>(out, value.as<bool>() ? 1 : 0);
    case ValueType::STRING: return put_string(out, value.as<std::string>());
    case ValueType::UINT64: return put(out, value.as<uint64_t>());
    case ValueType::INT64: return put(out, value.as<int64_t>());
    case ValueType::FLOAT64: return put(out, value.as<double>());
    case ValueType::ARRAY:
      put(out, static_cast<uint32_t>(value.array().element_type));
      put<uint64_t>(out, value.array().elements.size());
      for (const Value& element : value.array().elements) put_value(out, element);
      return;
  }
}

uint32_t nesting_depth(const Value& value) {
  if (value.type() != ValueType::ARRAY) return 0;
  uint32_t deepest = 0;
  for (const Value& element : value.array().elements) {
    deepest = std::max(deepest, nesting_depth(element));
  }
  return deepest + 1;
}

uint64_t align_up(uint64_t offset, uint64_t alignment) {
  return offset + (alignment - offset % alignment) % alignment;
}

constexpr std::string_view kStageNames[] = {"declaring", "writing tensor data", "inside a tensor",
                                            "finished"};

}  // namespace

Writer::Writer(std::filesystem::path path, uint32_t version)
    : path_(std::move(path)), version_(version) {
  if (version != 2 && version != 3) {
    fail("{}: cannot write GGUF version {} (only 2 and 3)", path_.string(), version);
  }
}

Writer::~Writer() {
  if (out_ == nullptr) return;  // nothing written, or finished
  std::fclose(out_);
  std::error_code ignored;
  std::filesystem::remove(path_, ignored);  // an incomplete file must not pass for a model
}

void Writer::require_stage(Stage stage, std::string_view action) const {
  if (stage_ != stage) {
    fail("{}: cannot {} while {}", path_.string(), action,
         kStageNames[static_cast<int>(stage_)]);
  }
}

void Writer::set(std::string key, Value value) {
  require_stage(Stage::kDeclaring, "set metadata");
  if (metadata_index_.contains(key)) fail("{}: metadata key '{}' set twice", path_.string(), key);
  if (nesting_depth(value) > kMaxArrayNesting) {
    fail("{}: metadata key '{}': arrays nested more than {} deep", path_.string(), key,
         kMaxArrayNesting);
  }
  if (key == "general.alignment") {
    if (value.type() != ValueType::UINT32) {
      fail("{}: general.alignment must be UINT32, not {}", path_.string(),
           value_type_name(value.type()));
    }
    const uint32_t alignment = value.as<uint32_t>();
    if (alignment == 0 || (alignment & (alignment - 1)) != 0) {
      fail("{}: general.alignment {} is not a power of two", path_.string(), alignment);
    }
    alignment_ = alignment;
  }
  metadata_index_.emplace(key, metadata_.size());
  metadata_.emplace_back(std::move(key), std::move(value));
}

void Writer::add_tensor(std::string name, TensorType type, std::vector<uint64_t> dims) {
  require_stage(Stage::kDeclaring, "declare a tensor");
  if (tensor_index_.contains(name)) fail("{}: tensor '{}' declared twice", path_.string(), name);
  if (dims.empty() || dims.size() > kMaxDims) {
    fail("{}: tensor '{}': {} dims (1 to {} allowed)", path_.string(), name, dims.size(), kMaxDims);
  }
  const TensorTypeInfo layout = tensor_type_info(type);
  uint64_t elements = 1;
  for (uint64_t dim : dims) {
    if (dim == 0 || dim > kInt64Max || elements > kInt64Max / dim) {
      fail("{}: tensor '{}': dims {} are zero or overflow int64", path_.string(), name,
           fmt::join(dims, " x "));
    }
    elements *= dim;
  }
  if (dims[0] % layout.block_size != 0) {
    fail("{}: tensor '{}': row length ne[0] = {} is not a multiple of the {} block size {}",
         path_.string(), name, dims[0], layout.name, layout.block_size);
  }
  TensorInfo info;
  info.name = std::move(name);
  info.type = type;
  info.dims = std::move(dims);
  info.n_elements = elements;
  info.n_bytes = elements / layout.block_size * layout.block_bytes;
  tensor_index_.emplace(info.name, tensors_.size());
  tensors_.push_back(std::move(info));
}

void Writer::write_header() {
  require_stage(Stage::kDeclaring, "write the header");
  std::string header;
  put<uint32_t>(header, 0x46554747);  // "GGUF" read as a little-endian uint32
  put<uint32_t>(header, version_);
  put<uint64_t>(header, tensors_.size());
  put<uint64_t>(header, metadata_.size());
  for (const auto& [key, value] : metadata_) {
    put_string(header, key);
    put(header, static_cast<uint32_t>(value.type()));
    put_value(header, value);
  }
  uint64_t data_size = 0;
  for (TensorInfo& info : tensors_) {
    info.offset = data_size;
    data_size += align_up(info.n_bytes, alignment_);
    put_string(header, info.name);
    put<uint32_t>(header, static_cast<uint32_t>(info.dims.size()));
    for (uint64_t dim : info.dims) put(header, dim);
    put(header, static_cast<uint32_t>(info.type));
    put(header, info.offset);
  }
  out_ = std::fopen(path_.c_str(), "wb");
  if (out_ == nullptr) fail("{}: cannot create: {}", path_.string(), std::strerror(errno));
  write_bytes(header.data(), header.size());
  write_padding();
  stage_ = Stage::kWritingData;
}

void Writer::write_tensor(std::string_view name, std::span<const uint8_t> data) {
  begin_tensor(name);
  append(data);
  end_tensor();
}

void Writer::begin_tensor(std::string_view name) {
  require_stage(Stage::kWritingData, "begin a tensor");
  if (next_tensor_ == tensors_.size()) {
    fail("{}: tensor '{}': all declared tensors are already written", path_.string(), name);
  }
  const std::string& expected = tensors_[next_tensor_].name;
  if (name != expected) {
    fail("{}: tensor '{}' written out of order: tensor '{}' is next", path_.string(), name,
         expected);
  }
  tensor_written_ = 0;
  stage_ = Stage::kInTensor;
}

void Writer::append(std::span<const uint8_t> chunk) {
  require_stage(Stage::kInTensor, "append tensor data");
  const TensorInfo& info = tensors_[next_tensor_];
  if (chunk.size() > info.n_bytes - tensor_written_) {
    fail("{}: tensor '{}': {} more bytes would exceed its size of {} bytes ({} written)",
         path_.string(), info.name, chunk.size(), info.n_bytes, tensor_written_);
  }
  write_bytes(chunk.data(), chunk.size());
  tensor_written_ += chunk.size();
}

void Writer::end_tensor() {
  require_stage(Stage::kInTensor, "end a tensor");
  const TensorInfo& info = tensors_[next_tensor_];
  if (tensor_written_ != info.n_bytes) {
    fail("{}: tensor '{}': {} of its {} bytes written", path_.string(), info.name,
         tensor_written_, info.n_bytes);
  }
  write_padding();
  ++next_tensor_;
  stage_ = Stage::kWritingData;
}

void Writer::finish() {
  require_stage(Stage::kWritingData, "finish");
  if (next_tensor_ != tensors_.size()) {
    fail("{}: finish() before the data of tensor '{}' was written", path_.string(),
         tensors_[next_tensor_].name);
  }
  const bool flushed = std::fflush(out_) == 0;
  const bool closed = std::fclose(out_) == 0;
  if (!flushed || !closed) {
    out_ = nullptr;
    std::error_code ignored;
    std::filesystem::remove(path_, ignored);
    fail("{}: write failed: {}", path_.string(), std::strerror(errno));
  }
  out_ = nullptr;
  stage_ = Stage::kFinished;
}

void Writer::write_bytes(const void* data, size_t size) {
  if (size > 0 && std::fwrite(data, 1, size, out_) != size) {
    fail("{}: write failed: {}", path_.string(), std::strerror(errno));
  }
  written_ += size;
}

void Writer::write_padding() {
  static constexpr uint8_t kZeros[256] = {};
  uint64_t padding = align_up(written_, alignment_) - written_;
  while (padding > 0) {
    const uint64_t step = std::min<uint64_t>(padding, sizeof(kZeros));
    write_bytes(kZeros, step);
    padding -= step;
  }
}

}  // namespace realizar::gguf
