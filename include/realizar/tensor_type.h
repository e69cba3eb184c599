// Tensor element types as numbered in GGUF (ggml's `enum ggml_type`), with their block layout.
// Source: the GGUF specification (ggml/docs/gguf.md) and ggml's type traits table.
// A quantized type stores a row as consecutive blocks of `block_size` elements, each `block_bytes`
// long; plain types have block_size 1. Ids 4, 5, 31-33 and 36-38 were removed from ggml and are
// rejected like any unknown id.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace realizar {

enum class TensorType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
  IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22,
  IQ4_XS = 23, I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30,
  TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39,
};

struct TensorTypeInfo {
  std::string_view name;  // as llama.cpp prints it: "Q4_K", "F16", ...
  uint32_t block_size;    // elements per block
  uint32_t block_bytes;   // bytes per block
};

// Layout of a known type id; std::nullopt for ids GGUF does not define.
std::optional<TensorTypeInfo> tensor_type_info(uint32_t type_id);

// Layout of a valid type (throws realizar::Error for an id that is not a known type).
TensorTypeInfo tensor_type_info(TensorType type);

std::string_view tensor_type_name(TensorType type);

// Parses "q4_k", "Q4_K", "f16", ... ; std::nullopt when the name is unknown.
std::optional<TensorType> tensor_type_from_name(std::string_view name);

// Bytes of a row of `elements` elements; throws realizar::Error when `elements` is not a multiple
// of the block size.
uint64_t row_bytes(TensorType type, uint64_t elements);

}  // namespace realizar
