// Launch failures of the CUDA kernels as realizar::Error (launch.cuh).
#include <cuda_runtime_api.h>

#include "realizar/error.h"

namespace realizar::cuda {

void check_launch(cudaError_t status, const char* kernel) {
  if (status != cudaSuccess) fail("CUDA: launching {} failed: {}", kernel, cudaGetErrorString(status));
}

void unhandled_case(const char* launcher, const char* what, long long value) {
  fail("CUDA {}: no kernel for {} {}", launcher, what, value);
}

}  // namespace realizar::cuda
