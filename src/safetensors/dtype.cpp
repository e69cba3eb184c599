// safetensors dtypes and the exact conversion of F32 / F16 / BF16 data to float32.
#include <bit>
#include <cstring>

#include "realizar/error.h"
#include "realizar/quant_blocks.h"
#include "safetensors/dtype.h"

namespace realizar::safetensors {
namespace {

struct DTypeInfo {
  std::string_view name;
  size_t size;
};

// Indexed by DType; names as the safetensors header spells them (safetensors/src/tensor.rs, Dtype).
constexpr DTypeInfo kDTypes[] = {
    {"BOOL", 1}, {"U8", 1}, {"I8", 1}, {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"F8_E8M0", 1}, {"I16", 2},
    {"U16", 2},  {"F16", 2}, {"BF16", 2}, {"I32", 4},  {"U32", 4}, {"F32", 4}, {"F64", 8},
    {"I64", 8},  {"U64", 8}, {"C64", 8},
};

// Exact 16-bit float conversions (quant_blocks.h: fp16_to_fp32, bf16_to_fp32).
template <typename Convert>
void convert_16bit(std::span<const std::byte> data, float* out, Convert to_float) {
  const size_t count = data.size() / 2;
  for (size_t i = 0; i < count; ++i) {
    uint16_t half;
    std::memcpy(&half, data.data() + 2 * i, 2);  // data may be unaligned; little-endian host
    out[i] = to_float(half);
  }
}

}  // namespace

static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian");

std::string_view dtype_name(DType dtype) { return kDTypes[static_cast<size_t>(dtype)].name; }
size_t dtype_size(DType dtype) { return kDTypes[static_cast<size_t>(dtype)].size; }

std::optional<DType> dtype_from_name(std::string_view name) {
  for (size_t i = 0; i < std::size(kDTypes); ++i) {
    if (kDTypes[i].name == name) return static_cast<DType>(i);
  }
  return std::nullopt;
}

int64_t TensorEntry::element_count() const {
  int64_t count = 1;
  for (int64_t dim : shape) count *= dim;
  return count;
}

void to_float32(const TensorEntry& tensor, float* out) {
  switch (tensor.dtype) {
    case DType::F32:
      std::memcpy(out, tensor.data.data(), tensor.data.size());
      return;
    case DType::F16:
      return convert_16bit(tensor.data, out, fp16_to_fp32);
    case DType::BF16:
      return convert_16bit(tensor.data, out, bf16_to_fp32);
    default:
      fail("{}: tensor '{}' has dtype {}; only F32, F16 and BF16 convert to float32", tensor.file.string(),
           tensor.name, dtype_name(tensor.dtype));
  }
}

}  // namespace realizar::safetensors
