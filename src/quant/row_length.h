// Row-length check shared by dequantize_row and quantize_row.
#pragma once

#include <cstdint>

#include "realizar/error.h"
#include "realizar/tensor_type.h"

namespace realizar {

// Throws realizar::Error naming the operation and type when `n` is negative or not a multiple of
// the type's block size.
inline void check_row_length(TensorType type, int64_t n, const char* operation) {
  const TensorTypeInfo info = tensor_type_info(type);
  if (n < 0 || n % info.block_size != 0) {
    fail("cannot {} a row of {} elements as {}: not a multiple of the block size {}", operation, n,
         info.name, info.block_size);
  }
}

}  // namespace realizar
