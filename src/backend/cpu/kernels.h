// CPU dot-product kernels of the CPU backend: a weight row in its GGUF type against an activation
// row, the way ggml's CPU backend computes them (ggml-cpu/quants.c, ggml_vec_dot_*): the
// activation vector is quantized once per matmul to 8-bit blocks (Q8_K for K-quant weights, Q8_0
// for the 32-element formats) and each weight block is multiplied with integer arithmetic, the
// block scales applied in float. Plain float weights (F32, F16, BF16) take float activations.
// Formats: include/realizar/quant_blocks.h.
//
// Each kernel is compiled for the best instruction set the compiler targets (AVX-512 VNNI with
// 256-bit vectors, else AVX2, else scalar); the scalar versions are always built and exported for
// tests and machines without AVX2.
#pragma once

#include <cstddef>
#include <cstdint>

#include "realizar/tensor_type.h"

namespace realizar::cpu {

// sum_i w[i] * a[i] over one row of `n` elements; `w` is a row of the weight type, `a` a row of the
// activation type that activation_type() gives for it. `n` is a multiple of both block sizes.
using DotKernel = float (*)(const void* w, const void* a, int64_t n);

// out[t] = sum_i w[i] * a_t[i] for `tokens` activation rows a_t = a + t * stride, 1 <= tokens <=
// kMaxTokens: the weight row is decoded once for all of them (batched prefill).
constexpr int kMaxTokens = 4;
using MultiDotKernel = void (*)(const void* w, const void* a, size_t stride, int tokens, int64_t n,
                                float* out);

// The multi-token kernel of `weight_type`, or nullptr when it has none (use dot_kernel per token).
MultiDotKernel multi_dot_kernel(TensorType weight_type);

// The activation encoding a weight type's kernel reads: Q8_K, Q8_0 or F32.
TensorType activation_type(TensorType weight_type);

// Fastest kernel for `weight_type` on this build. Types without a fused kernel (Q2_K, Q3_K, ...)
// get a kernel that dequantizes 256 elements at a time onto the stack and takes an F32 dot
// product. Throws realizar::Error when the type cannot be dequantized at all.
DotKernel dot_kernel(TensorType weight_type);

// The portable scalar kernel for `weight_type` (for tests); nullptr when there is none.
DotKernel scalar_dot_kernel(TensorType weight_type);

// Name of the instruction set the fast kernels were compiled for ("avx512vnni", "avx2", "scalar").
const char* kernel_isa();

// Encodes `n` floats (one activation row) as `type` (Q8_K, Q8_0 or F32) into `dst`
// (row_bytes(type, n) bytes). Q8_0/Q8_K: d = max|x| / 127, q = round(x / d), as ggml's
// quantize_row_q8_0 / quantize_row_q8_K.
void quantize_activation_row(TensorType type, const float* x, void* dst, int64_t n);

// Float dot product sum_i a[i] * b[i] (attention scores), vectorised.
float dot_f32(const float* a, const float* b, int64_t n);

// y[i] += s * x[i]
void axpy_f32(float s, const float* x, float* y, int64_t n);

}  // namespace realizar::cpu
