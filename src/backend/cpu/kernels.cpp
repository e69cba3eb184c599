#include "backend/cpu/kernels.h"

#include <algorithm>
#include <cstdlib>
#include <optional>

#include "realizar/error.h"

namespace realizar::cpu {

ActivationFormat activation_format(TensorType weight_type) {
  switch (weight_type) {
    case TensorType::Q4_K: case TensorType::Q5_K: case TensorType::Q6_K:
      return ActivationFormat::Q8K;
    case TensorType::Q4_0: case TensorType::Q4_1: case TensorType::Q5_0: case TensorType::Q5_1:
    case TensorType::Q8_0:
      return ActivationFormat::Q8Block32;
    default:
      return ActivationFormat::F32;
  }
}

size_t activation_row_bytes(ActivationFormat format, int64_t n) {
  switch (format) {
    case ActivationFormat::Q8K: return static_cast<size_t>(n / QK_K) * sizeof(ActBlockK);
    case ActivationFormat::Q8Block32: return static_cast<size_t>(n / 32) * sizeof(ActBlock32);
    case ActivationFormat::F32: return static_cast<size_t>(n) * sizeof(float);
  }
  fail("unknown activation format {}", static_cast<int>(format));
}

int packed_type_index(TensorType type) {
  const auto* it = std::find(kPackedTypes.begin(), kPackedTypes.end(), type);
  return it == kPackedTypes.end() ? -1 : static_cast<int>(it - kPackedTypes.begin());
}

GemmKernel KernelSet::gemm_for(TensorType type) const {
  const int index = packed_type_index(type);
  if (index < 0) fail("the CPU backend has no GEMM kernel for {}", tensor_type_name(type));
  return gemm[static_cast<size_t>(index)];
}

const KernelSet& kernel_set(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return scalar_kernels();
#if defined(__x86_64__)
    case Isa::Avx2: return avx2_kernels();
    case Isa::Avx512: return avx512_kernels();
    case Isa::Amx: return amx_kernels();
#else
    case Isa::Avx2: case Isa::Avx512: case Isa::Amx: break;
#endif
  }
  fail("this build has no {} CPU kernels", isa_name(isa));
}

const KernelSet& active_kernels() {
  static const KernelSet& set = [] () -> const KernelSet& {
    const char* forced = std::getenv("REALIZAR_CPU_ISA");
    return kernel_set(choose_isa(cpu_features(), forced && *forced ? std::optional<std::string_view>(forced)
                                                                   : std::nullopt));
  }();
  return set;
}

}  // namespace realizar::cpu
