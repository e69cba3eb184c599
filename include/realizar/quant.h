// Scalar dequantization and quantization of rows of GGUF tensor types.
// Formats: include/realizar/quant_blocks.h (ggml-common.h); dequantization is bit-exact with the
// GGUF definitions as implemented by ggml's dequantize_row_* and gguf-py's gguf.quants (float32
// arithmetic, no fused multiply-add). Quantizers for Q4_0..Q8_0 reproduce ggml's reference
// (quantize_row_*_ref, without importance matrix) bit for bit; the K-quant quantizers search
// scales and mins that minimise a weighted squared error (see docs/quantization.md).
#pragma once

#include <cstdint>

#include "realizar/quant_blocks.h"
#include "realizar/tensor_type.h"

namespace realizar {

// Whether dequantize_row / quantize_row handle `type`.
bool can_dequantize(TensorType type);
bool can_quantize(TensorType type);

// Decodes `n` elements stored as `type` at `src` (row_bytes(type, n) bytes) into `dst` (n floats).
// Throws realizar::Error when the type is not supported (IQ*, TQ*, MXFP4, integer types, Q8_1) or
// `n` is negative or not a multiple of the type's block size.
void dequantize_row(TensorType type, const void* src, float* dst, int64_t n);

// Encodes `n` floats from `src` as `type` into `dst` (row_bytes(type, n) bytes). Supported: F32,
// F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K, Q8_K. Throws realizar::Error for other
// types or when `n` is negative or not a multiple of the block size. Inputs must be finite.
void quantize_row(TensorType type, const float* src, void* dst, int64_t n);

// Per-type entry points for callers that know the type (no dispatch, no checks): `n` is the
// element count and must be a multiple of the type's block size.
// x = d * (q - 8)
void dequantize_row_q4_0(const block_q4_0* src, float* dst, int64_t n);
// x = d * q + m
void dequantize_row_q4_1(const block_q4_1* src, float* dst, int64_t n);
// x = d * (q - 16), q 5 bits
void dequantize_row_q5_0(const block_q5_0* src, float* dst, int64_t n);
// x = d * q + m, q 5 bits
void dequantize_row_q5_1(const block_q5_1* src, float* dst, int64_t n);
// x = d * q
void dequantize_row_q8_0(const block_q8_0* src, float* dst, int64_t n);
// x = (d * sc) * q - (dmin * m), sc and m 4 bits per 16 elements, q 2 bits
void dequantize_row_q2_K(const block_q2_K* src, float* dst, int64_t n);
// x = (d * (sc - 32)) * (q - 4 * !hbit), sc 6 bits per 16 elements, q 2 bits + 1 high bit
void dequantize_row_q3_K(const block_q3_K* src, float* dst, int64_t n);
// x = (d * sc) * q - (dmin * m), sc and m 6 bits per 32 elements, q 4 bits
void dequantize_row_q4_K(const block_q4_K* src, float* dst, int64_t n);
// x = (d * sc) * q - (dmin * m), sc and m 6 bits per 32 elements, q 5 bits
void dequantize_row_q5_K(const block_q5_K* src, float* dst, int64_t n);
// x = (d * sc) * (q - 32), sc int8 per 16 elements, q 6 bits
void dequantize_row_q6_K(const block_q6_K* src, float* dst, int64_t n);
// x = d * q, d float32
void dequantize_row_q8_K(const block_q8_K* src, float* dst, int64_t n);

void quantize_row_q4_0(const float* src, block_q4_0* dst, int64_t n);
void quantize_row_q4_1(const float* src, block_q4_1* dst, int64_t n);
void quantize_row_q5_0(const float* src, block_q5_0* dst, int64_t n);
void quantize_row_q5_1(const float* src, block_q5_1* dst, int64_t n);
void quantize_row_q8_0(const float* src, block_q8_0* dst, int64_t n);
void quantize_row_q4_K(const float* src, block_q4_K* dst, int64_t n);
void quantize_row_q5_K(const float* src, block_q5_K* dst, int64_t n);
void quantize_row_q6_K(const float* src, block_q6_K* dst, int64_t n);
void quantize_row_q8_K(const float* src, block_q8_K* dst, int64_t n);

}  // namespace realizar
