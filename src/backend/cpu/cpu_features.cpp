#include "backend/cpu/cpu_features.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <string>
#include <utility>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "realizar/error.h"
#include "util/cpu_count.h"

namespace realizar::cpu {
namespace {

#if defined(__x86_64__) || defined(__i386__)
struct Registers {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
};

Registers cpuid(unsigned leaf, unsigned subleaf) {
  Registers r;
  if (__get_cpuid_count(leaf, subleaf, &r.eax, &r.ebx, &r.ecx, &r.edx) == 0) return {};
  return r;
}

// XCR0: which register states the OS saves on a context switch (Intel SDM vol. 1, 13.3).
unsigned long long xcr0() {
  unsigned eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<unsigned long long>(edx) << 32) | eax;
}

bool bit(unsigned word, int n) { return ((word >> n) & 1u) != 0; }

// Linux keeps the AMX tile data (8 KiB of state per thread) off until a process asks for it
// (Documentation/arch/x86/xstate.rst); a kernel too old to know the request, or one that refuses
// it, leaves AMX unusable, and the kernels fall back to the next set.
bool os_grants_tile_data() {
#if defined(__linux__) && defined(__x86_64__)
  constexpr int kArchReqXcompPerm = 0x1023;
  constexpr int kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}

CpuFeatures detect() {
  CpuFeatures f;
  const Registers leaf1 = cpuid(1, 0);
  if (!bit(leaf1.ecx, 27)) return f;  // no OSXSAVE: the OS saves no vector state beyond SSE
  const unsigned long long xcr = xcr0();
  const bool os_ymm = (xcr & 0x6) == 0x6;            // SSE + AVX state
  const bool os_zmm = os_ymm && (xcr & 0xE0) == 0xE0;  // opmask, ZMM_Hi256, Hi16_ZMM
  const Registers leaf7 = cpuid(7, 0);
  const Registers leaf7_1 = cpuid(7, 1);
  f.fma = os_ymm && bit(leaf1.ecx, 12);
  f.f16c = os_ymm && bit(leaf1.ecx, 29);
  f.avx2 = os_ymm && bit(leaf7.ebx, 5);
  f.avx512f = os_zmm && bit(leaf7.ebx, 16);
  f.avx512dq = os_zmm && bit(leaf7.ebx, 17);
  f.avx512bw = os_zmm && bit(leaf7.ebx, 30);
  f.avx512vl = os_zmm && bit(leaf7.ebx, 31);
  f.avx512vnni = os_zmm && bit(leaf7.ecx, 11);
  f.avx512bf16 = os_zmm && bit(leaf7_1.eax, 5);
  const bool os_tiles = (xcr & 0x60000) == 0x60000;  // XTILECFG, XTILEDATA
  f.amx_int8 = os_tiles && bit(leaf7.edx, 24) && bit(leaf7.edx, 25) && os_grants_tile_data();
  return f;
}
#else
CpuFeatures detect() { return {}; }
#endif

std::optional<int> read_int(const std::string& path) {
  std::ifstream in(path);
  int value = 0;
  if (!(in >> value)) return std::nullopt;
  return value;
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect();
  return features;
}

std::string_view isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512-vnni";
    case Isa::Amx: return "amx-int8";
  }
  fail("unknown CPU kernel set {}", static_cast<int>(isa));
}

bool isa_supported(Isa isa, const CpuFeatures& f) {
  switch (isa) {
    case Isa::Scalar: return true;
    case Isa::Avx2: return f.avx2 && f.fma && f.f16c;
    case Isa::Avx512:
      return isa_supported(Isa::Avx2, f) && f.avx512f && f.avx512bw && f.avx512dq && f.avx512vl &&
             f.avx512vnni;
    case Isa::Amx: return isa_supported(Isa::Avx512, f) && f.amx_int8;
  }
  fail("unknown CPU kernel set {}", static_cast<int>(isa));
}

Isa best_isa(const CpuFeatures& features) {
  for (Isa isa : {Isa::Amx, Isa::Avx512, Isa::Avx2}) {
    if (isa_supported(isa, features)) return isa;
  }
  return Isa::Scalar;
}

Isa choose_isa(const CpuFeatures& features, std::optional<std::string_view> forced) {
  if (!forced) return best_isa(features);
  Isa isa;
  if (*forced == "amx") {
    isa = Isa::Amx;
  } else if (*forced == "avx512") {
    isa = Isa::Avx512;
  } else if (*forced == "avx2") {
    isa = Isa::Avx2;
  } else if (*forced == "scalar") {
    isa = Isa::Scalar;
  } else {
    fail("REALIZAR_CPU_ISA must be amx, avx512, avx2 or scalar, got '{}'", *forced);
  }
  if (!isa_supported(isa, features)) {
    fail("REALIZAR_CPU_ISA={}: this CPU cannot run the {} kernels (best: {})", *forced, isa_name(isa),
         isa_name(best_isa(features)));
  }
  return isa;
}

int physical_core_count() {
  std::set<std::pair<int, int>> cores;  // (package, core) pairs
  for (int cpu : allowed_cpus()) {
    const std::string topology = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
    const std::optional<int> package = read_int(topology + "physical_package_id");
    const std::optional<int> core = read_int(topology + "core_id");
    if (!package || !core) return usable_cpu_count();
    cores.emplace(*package, *core);
  }
  if (cores.empty()) return usable_cpu_count();
  const int count = static_cast<int>(cores.size());
  return std::min(count, process_cpu_limit().value_or(count));  // a limit is at least 1
}

}  // namespace realizar::cpu
