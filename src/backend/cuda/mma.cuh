// Warp-level tensor-core helpers (sm_80 and later; PTX ISA "Warp-level Matrix Multiply-Accumulate
// Instructions"), shared by the kernels that multiply float16 tiles: dequant_mma.cu and
// flash_attention.cu. Fragment layouts of m16n8k16 (g = lane / 4, c = 2 (lane % 4)):
//   A (16 x 16, row major), 4 registers of 2 halves: a[0] = (g, c..c+1), a[1] = (g+8, c..c+1),
//     a[2] = (g, c+8..c+9), a[3] = (g+8, c+8..c+9);
//   B (16 x 8, column major), 2 registers: b0 = (k = c..c+1, n = g), b1 = (k = c+8..c+9, n = g);
//   C/D (16 x 8 float32): d[0..1] = (g, c..c+1), d[2..3] = (g+8, c..c+1).
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

namespace realizar::cuda {

// d += A (16 x 16, row major) * B (16 x 8, column major), float16 in, float32 accumulators.
__device__ __forceinline__ void mma_f16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Four 8 x 8 float16 matrices from shared memory (ldmatrix): lanes 8i..8i+7 pass the addresses of
// matrix i's rows (8 halves, 16-byte aligned), and r[i] receives matrix i's elements
// (lane / 4, 2 (lane % 4) + {0, 1}): a B fragment of the rows' matrix read as column major.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* row) {
  const auto address = static_cast<uint32_t>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
}

// ldmatrix_x4 with each matrix transposed: r[i] receives matrix i's elements
// (2 (lane % 4) + {0, 1}, lane / 4), a B fragment of the rows' matrix read as row major.
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* row) {
  const auto address = static_cast<uint32_t>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
}

// Two floats as the float16 pair of one register (round to nearest), the first in the low half.
__device__ __forceinline__ uint32_t pack_half2(float low, float high) {
  const __half2 h = __floats2half2_rn(low, high);
  return *reinterpret_cast<const uint32_t*>(&h);
}

}  // namespace realizar::cuda
