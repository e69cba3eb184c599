// GGUF File: ownership of the mapping and typed metadata and tensor lookups.
#include <limits>

#include "realizar/error.h"
#include "realizar/gguf.h"

namespace realizar::gguf {
namespace {

// The value of any integer type as a sign and magnitude; std::nullopt for other types.
struct Integer {
  bool negative;
  uint64_t magnitude;
};

std::optional<Integer> integer_of(const Value& value) {
  auto from_signed = [](int64_t v) {
    return Integer{v < 0, v < 0 ? 0 - static_cast<uint64_t>(v) : static_cast<uint64_t>(v)};
  };
  switch (value.type()) {
    case ValueType::UINT8: return Integer{false, value.as<uint8_t>()};
    case ValueType::UINT16: return Integer{false, value.as<uint16_t>()};
    case ValueType::UINT32: return Integer{false, value.as<uint32_t>()};
    case ValueType::UINT64: return Integer{false, value.as<uint64_t>()};
    case ValueType::INT8: return from_signed(value.as<int8_t>());
    case ValueType::INT16: return from_signed(value.as<int16_t>());
    case ValueType::INT32: return from_signed(value.as<int32_t>());
    case ValueType::INT64: return from_signed(value.as<int64_t>());
    default: return std::nullopt;
  }
}

std::optional<int64_t> signed_of(const Value& value) {
  const auto integer = integer_of(value);
  constexpr auto kMax = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  if (!integer || integer->magnitude > kMax + (integer->negative ? 1 : 0)) return std::nullopt;
  return integer->negative ? static_cast<int64_t>(0 - integer->magnitude)
                           : static_cast<int64_t>(integer->magnitude);
}

std::optional<double> float_of(const Value& value) {
  if (value.type() == ValueType::FLOAT32) return value.as<float>();
  if (value.type() == ValueType::FLOAT64) return value.as<double>();
  return std::nullopt;
}

}  // namespace

File::File(File&& other) noexcept { *this = std::move(other); }

File& File::operator=(File&& other) noexcept {
  if (this == &other) return *this;
  unmap();
  parts_ = std::move(other.parts_);
  mappings_ = std::exchange(other.mappings_, {});
  version_ = other.version_;
  alignment_ = other.alignment_;
  metadata_ = std::move(other.metadata_);
  metadata_index_ = std::move(other.metadata_index_);
  tensors_ = std::move(other.tensors_);
  tensor_index_ = std::move(other.tensor_index_);
  return *this;
}

File::~File() { unmap(); }

const Value* File::find(std::string_view key) const {
  const auto found = metadata_index_.find(key);
  return found == metadata_index_.end() ? nullptr : &metadata_[found->second].second;
}

const Value& File::require(std::string_view key) const {
  const Value* value = find(key);
  if (value == nullptr) fail("{}: metadata key '{}' is missing", path().string(), key);
  return *value;
}

void File::fail_key(std::string_view key, const Value& value, std::string_view expected) const {
  fail("{}: metadata key '{}' is {} = {}, expected {}", path().string(), key,
       value_type_name(value.type()), value.to_string(8), expected);
}

std::string File::get_string(std::string_view key) const {
  const Value& value = require(key);
  if (value.type() != ValueType::STRING) fail_key(key, value, "a STRING");
  return value.as<std::string>();
}

uint64_t File::get_uint(std::string_view key) const {
  const Value& value = require(key);
  const auto integer = integer_of(value);
  if (!integer || integer->negative) fail_key(key, value, "a non-negative integer");
  return integer->magnitude;
}

int64_t File::get_int(std::string_view key) const {
  const Value& value = require(key);
  const auto integer = signed_of(value);
  if (!integer) fail_key(key, value, "an integer that fits in int64");
  return *integer;
}

double File::get_float(std::string_view key) const {
  const Value& value = require(key);
  const auto number = float_of(value);
  if (!number) fail_key(key, value, "FLOAT32 or FLOAT64");
  return *number;
}

bool File::get_bool(std::string_view key) const {
  const Value& value = require(key);
  if (value.type() != ValueType::BOOL) fail_key(key, value, "a BOOL");
  return value.as<bool>();
}

std::string File::get_string_or(std::string_view key, std::string_view fallback) const {
  return find(key) ? get_string(key) : std::string(fallback);
}
uint64_t File::get_uint_or(std::string_view key, uint64_t fallback) const {
  return find(key) ? get_uint(key) : fallback;
}
int64_t File::get_int_or(std::string_view key, int64_t fallback) const {
  return find(key) ? get_int(key) : fallback;
}
double File::get_float_or(std::string_view key, double fallback) const {
  return find(key) ? get_float(key) : fallback;
}
bool File::get_bool_or(std::string_view key, bool fallback) const {
  return find(key) ? get_bool(key) : fallback;
}

std::vector<std::string> File::get_string_array(std::string_view key) const {
  const Value& value = require(key);
  if (value.type() != ValueType::ARRAY || value.array().element_type != ValueType::STRING) {
    fail_key(key, value, "an ARRAY of STRING");
  }
  std::vector<std::string> result;
  result.reserve(value.array().elements.size());
  for (const Value& element : value.array().elements) result.push_back(element.as<std::string>());
  return result;
}

std::vector<float> File::get_float_array(std::string_view key) const {
  const Value& value = require(key);
  if (value.type() != ValueType::ARRAY || (value.array().element_type != ValueType::FLOAT32 &&
                                            value.array().element_type != ValueType::FLOAT64)) {
    fail_key(key, value, "an ARRAY of FLOAT32 or FLOAT64");
  }
  std::vector<float> result;
  result.reserve(value.array().elements.size());
  for (const Value& element : value.array().elements) {
    result.push_back(static_cast<float>(*float_of(element)));
  }
  return result;
}

std::vector<int64_t> File::get_int_array(std::string_view key) const {
  const Value& value = require(key);
  if (value.type() != ValueType::ARRAY || !is_integer_type(value.array().element_type)) {
    fail_key(key, value, "an ARRAY of integers");
  }
  std::vector<int64_t> result;
  result.reserve(value.array().elements.size());
  for (const Value& element : value.array().elements) {
    const auto integer = signed_of(element);
    if (!integer) fail_key(key, value, "an ARRAY of integers that fit in int64");
    result.push_back(*integer);
  }
  return result;
}

const TensorInfo* File::find_tensor(std::string_view name) const {
  const auto found = tensor_index_.find(name);
  return found == tensor_index_.end() ? nullptr : &tensors_[found->second];
}

const TensorInfo& File::tensor(std::string_view name) const {
  const TensorInfo* info = find_tensor(name);
  if (info == nullptr) fail("{}: tensor '{}' is missing", path().string(), name);
  return *info;
}

const uint8_t* File::tensor_data(const TensorInfo& info) const {
  return mappings_[info.part].bytes + parts_[info.part].data_offset + info.offset;
}

uint64_t File::file_size() const {
  uint64_t total = 0;
  for (const FilePart& part : parts_) total += part.size;
  return total;
}

}  // namespace realizar::gguf
