// The GPUs a benchmark ran next to, through the CUDA runtime. Compiled into every build; without
// the CUDA backend (REALIZAR_HAVE_CUDA unset) it reports none.
#pragma once

#include <nlohmann/json.hpp>

namespace realizar::bench {

// {"devices": [{index, name, memory_bytes, compute_capability, multiprocessors}],
//  "driver_version": "13.0", "runtime_version": "13.0" (cudaDriverGetVersion,
//  cudaRuntimeGetVersion), "kernel_driver_version": "580.159.04" (/proc/driver/nvidia/version)};
// null in a build without CUDA. Devices are empty, and the driver
// version null, when no driver or GPU is present.
nlohmann::json describe_gpus();

}  // namespace realizar::bench
