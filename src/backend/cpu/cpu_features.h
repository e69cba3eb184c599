// What the CPU under the process can run, read once from CPUID and the OS (XCR0), and which of the
// CPU backend's kernel sets (kernels.h) follows from it.
//
// Kernel sets, best first:
//   "amx-int8":    "avx512-vnni" with its GEMM kernels on the AMX tile unit (Sapphire Rapids and
//                  later), where the OS lets this process use the tile registers
//   "avx512-vnni": AVX-512 F/BW/DQ/VL + VNNI (Ice Lake, Sapphire Rapids, Zen 4 and later)
//   "avx2":        AVX2 + FMA + F16C (Haswell, Zen 1 and later)
//   "scalar":      portable C++, any CPU
// REALIZAR_CPU_ISA=amx|avx512|avx2|scalar forces one (tests, comparisons); forcing a set the CPU
// cannot run is an error, not a crash.
#pragma once

#include <optional>
#include <string_view>

namespace realizar::cpu {

struct CpuFeatures {
  // Instruction-set bits (CPUID leaf 7 / 1), each counted only when the OS saves the registers it
  // needs (XCR0: YMM for AVX*, ZMM and opmask for AVX-512).
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512dq = false, avx512vl = false, avx512vnni = false;
  bool avx512bf16 = false;
  // AMX-TILE + AMX-INT8, the OS saving tile state (XCR0 bits 17, 18) and granting this process the
  // tile data (Linux arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA), asked once at detection).
  bool amx_int8 = false;
};

// The features of the CPU this process runs on (computed once).
const CpuFeatures& cpu_features();

enum class Isa { Scalar, Avx2, Avx512, Amx };

// "scalar", "avx2", "avx512-vnni", "amx-int8".
std::string_view isa_name(Isa isa);

// Whether `features` can run kernel set `isa`.
bool isa_supported(Isa isa, const CpuFeatures& features);

// The best set `features` can run.
Isa best_isa(const CpuFeatures& features);

// The set to run: REALIZAR_CPU_ISA when set (`forced`: its value), else the best one. Throws
// realizar::Error naming the value when it is not amx, avx512, avx2 or scalar, or when the CPU cannot
// run that set.
Isa choose_isa(const CpuFeatures& features, std::optional<std::string_view> forced);

// Physical cores this process may run on (its affinity mask, hyper-threads of one core counted
// once, from /sys/devices/system/cpu/cpu*/topology), capped by its cgroup's CPU limit
// (util/cpu_count.h, process_cpu_limit); usable_cpu_count() when the topology cannot be read.
// At least 1.
int physical_core_count();

}  // namespace realizar::cpu
