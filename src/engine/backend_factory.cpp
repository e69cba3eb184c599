#include "engine/backend_factory.h"

#include <thread>

#include "backend/cpu/cpu_backend.h"
#include "backend/reference/reference_backend.h"
#ifdef REALIZAR_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif
#include "bench/bench.h"
#include "realizar/error.h"

namespace realizar {

std::unique_ptr<Backend> make_backend(Device device, const Model& model, int64_t cache_tokens,
                                      int threads) {
  switch (device) {
    case Device::Reference:
      return make_reference_backend(model.config, model.weights, cache_tokens);
    case Device::Auto:
#ifdef REALIZAR_HAVE_CUDA
      if (cuda_device_available()) {
        return make_cuda_backend(model.config, model.weights, cache_tokens);
      }
#endif
      return make_cpu_backend(model.config, model.weights, cache_tokens, threads);
    case Device::Cpu:
      return make_cpu_backend(model.config, model.weights, cache_tokens, threads);
    case Device::Cuda:
#ifdef REALIZAR_HAVE_CUDA
      if (!cuda_device_available()) fail("--device cuda: no CUDA device is available");
      return make_cuda_backend(model.config, model.weights, cache_tokens);
#else
      fail("this build has no CUDA backend (configure with REALIZAR_CUDA=ON)");
#endif
  }
  fail("unknown device");
}

double measure_copy_bandwidth(const Backend& backend, int threads) {
#ifdef REALIZAR_HAVE_CUDA
  if (backend.name() == "cuda") return cuda_copy_bandwidth();
#else
  (void)backend;
#endif
  return bench::measure_host_copy_bandwidth(
      threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency()));
}

}  // namespace realizar
