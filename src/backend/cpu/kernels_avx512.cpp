// The AVX-512 VNNI kernel set: x86_kernels.h over 16-row vectors (one packed group per pass),
// u8 x s8 products by vpdpbusd, int16 pairs by vpdpwssd, fifth bits merged by byte masks.
#if defined(__x86_64__)
// GCC 12 warns about the deliberately undefined `__m512i __Y = __Y` inside its own AVX-512
// intrinsics once they are inlined (GCC bug 105593).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "backend/cpu/kernels.h"
#include "backend/cpu/packed_weights.h"

// Everything below is compiled for AVX-512 (see x86_kernels.h for why the pragma comes last).
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")
#endif

#define REALIZAR_X86_KERNELS_TU
#include "backend/cpu/x86_kernels.h"

#include "backend/cpu/avx512_ops.h"

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

namespace realizar::cpu {

// Portable code (the target ends above): called only once the CPU is known to run the set.
const KernelSet& avx512_kernels() {
  static const KernelSet set = make_kernel_set<Avx512Ops, 8>(Isa::Avx512);
  return set;
}

}  // namespace realizar::cpu
#endif  // __x86_64__
