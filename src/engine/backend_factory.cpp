#include "engine/backend_factory.h"

#include "backend/cpu/cpu_backend.h"
#include "backend/reference/reference_backend.h"
#ifdef REALIZAR_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif
#include "bench/bench.h"
#include "parallel/shard_plan.h"
#include "realizar/error.h"
#include "util/cpu_count.h"

namespace realizar {

Device resolve_device(Device device) {
  if (device != Device::Auto) return device;
#ifdef REALIZAR_HAVE_CUDA
  if (cuda_device_available()) return Device::Cuda;
#endif
  return Device::Cpu;
}

int64_t kv_bytes_per_token(Device device, const ModelConfig& config) {
  // Before the backend exists: the CUDA and CPU backends store float16, the reference float32.
  return kv_cache_bytes_per_token(config, resolve_device(device) == Device::Reference ? 4 : 2);
}

std::unique_ptr<Backend> make_backend(Device device, const Model& model, const BackendOptions& options) {
  if (options.tensor_parallel != 1) {
    parallel::plan_tensor_parallel(model.config, model.weights, options.tensor_parallel);  // the model's limits first
    fail("tensor parallelism needs {} GPUs and the CUDA backend's multi-GPU ranks, which this build does not run yet",
         options.tensor_parallel);
  }
  switch (device) {
    case Device::Reference:
      return make_reference_backend(model.config, model.weights, options);
    case Device::Auto:
#ifdef REALIZAR_HAVE_CUDA
      if (cuda_device_available()) {
        return make_cuda_backend(model.config, model.weights, options);
      }
#endif
      return make_cpu_backend(model.config, model.weights, options);
    case Device::Cpu:
      return make_cpu_backend(model.config, model.weights, options);
    case Device::Cuda:
#ifdef REALIZAR_HAVE_CUDA
      if (!cuda_device_available()) fail("--device cuda: no CUDA device is available");
      return make_cuda_backend(model.config, model.weights, options);
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
  return bench::measure_host_copy_bandwidth(threads > 0 ? threads : usable_cpu_count());
}

}  // namespace realizar
