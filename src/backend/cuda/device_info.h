// What the CUDA runtime reports about the GPUs present. Compiled only with the CUDA backend.
#pragma once

#include <string>
#include <vector>

namespace realizar::cuda {

struct DeviceInfo {
  int index;
  std::string name;
  int compute_major;
  int compute_minor;
  int multiprocessors;
  size_t total_memory_bytes;
};

// Devices the runtime can use; empty when there is no GPU or no driver (never throws for that).
std::vector<DeviceInfo> list_devices();

}  // namespace realizar::cuda
