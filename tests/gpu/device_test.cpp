// GPU presence: skips cleanly on machines without a GPU (CI), checks the device on the GPU machine.
#include <gtest/gtest.h>

#ifdef REALIZAR_HAVE_CUDA
#include "backend/cuda/device_info.h"
#endif

namespace {

TEST(GpuDevice, ReportsAHopperOrNewerDevice) {
#ifndef REALIZAR_HAVE_CUDA
  GTEST_SKIP() << "built without the CUDA backend";
#else
  auto devices = realizar::cuda::list_devices();
  if (devices.empty()) GTEST_SKIP() << "no CUDA device";
  EXPECT_GE(devices[0].compute_major, 9) << devices[0].name;
  EXPECT_GT(devices[0].total_memory_bytes, 1ull << 30);
#endif
}

}  // namespace
