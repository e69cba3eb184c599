#include "engine/backend_factory.h"

#include <thread>

#include "backend/cpu/cpu_backend.h"
#include "backend/reference/reference_backend.h"
#include "bench/bench.h"
#include "realizar/error.h"

namespace realizar {

std::unique_ptr<Backend> make_backend(Device device, const Model& model, int64_t cache_tokens,
                                      int threads) {
  switch (device) {
    case Device::Reference:
      return make_reference_backend(model.config, model.weights, cache_tokens);
    case Device::Auto:  // no CUDA backend is wired yet, so Auto means the CPU
    case Device::Cpu:
      return make_cpu_backend(model.config, model.weights, cache_tokens, threads);
    case Device::Cuda:
      break;
  }
  fail("this build has no CUDA backend yet; use --device cpu or --device reference");
}

double measure_copy_bandwidth(const Backend& backend, int threads) {
  (void)backend;
  return bench::measure_host_copy_bandwidth(
      threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency()));
}

}  // namespace realizar
