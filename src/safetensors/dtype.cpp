// safetensors dtypes and the exact conversion of F32 / F16 / BF16 data to float32.
#include <bit>
#include <cstring>

#include "realizar/error.h"
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

// IEEE 754 binary16 -> binary32 bits. Every binary16 value, subnormals included, is a normal or
// zero binary32, so the conversion is exact; NaN payloads keep their bits (shifted like numpy).
uint32_t f16_to_f32_bits(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exponent = (h >> 10) & 0x1F;
  uint32_t mantissa = h & 0x3FF;
  if (exponent == 0x1F) return sign | 0x7F800000 | (mantissa << 13);  // inf, NaN
  if (exponent != 0) return sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
  if (mantissa == 0) return sign;                                     // +-0
  // Subnormal mantissa * 2^-24: shift its leading one into the implicit bit position.
  uint32_t biased = 127 - 15 + 1;
  while ((mantissa & 0x400) == 0) {
    mantissa <<= 1;
    --biased;
  }
  return sign | (biased << 23) | ((mantissa & 0x3FF) << 13);
}

template <typename Convert>
void convert_16bit(std::span<const std::byte> data, float* out, Convert to_bits) {
  const size_t count = data.size() / 2;
  for (size_t i = 0; i < count; ++i) {
    uint16_t half;
    std::memcpy(&half, data.data() + 2 * i, 2);  // data may be unaligned; little-endian host
    out[i] = std::bit_cast<float>(to_bits(half));
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
      return convert_16bit(tensor.data, out, f16_to_f32_bits);
    case DType::BF16:
      return convert_16bit(tensor.data, out, [](uint16_t b) { return static_cast<uint32_t>(b) << 16; });
    default:
      fail("{}: tensor '{}' has dtype {}; only F32, F16 and BF16 convert to float32", tensor.file.string(),
           tensor.name, dtype_name(tensor.dtype));
  }
}

}  // namespace realizar::safetensors
