#include "bench/gpu_environment.h"

#ifdef REALIZAR_HAVE_CUDA
#include <cuda_runtime.h>

#include <fmt/format.h>

#include <fstream>
#include <regex>

#include "backend/cuda/device_info.h"
#endif

namespace realizar::bench {

#ifdef REALIZAR_HAVE_CUDA
namespace {
// CUDA encodes versions as 1000 * major + 10 * minor.
std::string cuda_version_string(int version) {
  return fmt::format("{}.{}", version / 1000, version % 1000 / 10);
}

// The kernel driver's version ("580.159.04") from /proc/driver/nvidia/version, else null.
nlohmann::json kernel_driver_version() {
  std::ifstream in("/proc/driver/nvidia/version");
  std::string line;
  std::getline(in, line);
  std::smatch match;
  if (std::regex_search(line, match, std::regex(R"(Kernel Module\s+(?:for \S+\s+)?([0-9][0-9.]+))"))) {
    return match[1].str();
  }
  return nullptr;
}
}  // namespace

nlohmann::json describe_gpus() {
  nlohmann::json devices = nlohmann::json::array();
  for (const cuda::DeviceInfo& d : cuda::list_devices()) {
    devices.push_back({{"index", d.index},
                       {"name", d.name},
                       {"memory_bytes", d.total_memory_bytes},
                       {"compute_capability", fmt::format("{}.{}", d.compute_major, d.compute_minor)},
                       {"multiprocessors", d.multiprocessors}});
  }
  nlohmann::json out = {{"devices", devices},
                        {"driver_version", nullptr},
                        {"runtime_version", nullptr},
                        {"kernel_driver_version", kernel_driver_version()}};
  int driver = 0, runtime = 0;
  if (cudaDriverGetVersion(&driver) == cudaSuccess && driver > 0) {
    out["driver_version"] = cuda_version_string(driver);
  }
  cudaGetLastError();
  if (cudaRuntimeGetVersion(&runtime) == cudaSuccess) {
    out["runtime_version"] = cuda_version_string(runtime);
  }
  return out;
}
#else
nlohmann::json describe_gpus() { return nullptr; }
#endif

}  // namespace realizar::bench
