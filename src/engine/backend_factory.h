// Chooses and builds the backend for a device request.
#pragma once

#include <memory>

#include "realizar/backend.h"
#include "realizar/engine.h"

namespace realizar {

// `cache_tokens`: KV cache capacity in tokens. Device::Auto picks CUDA when a GPU is present and
// the CUDA backend is built, else the CPU. Throws realizar::Error when the device is unavailable.
std::unique_ptr<Backend> make_backend(Device device, const Model& model, int64_t cache_tokens,
                                      int threads);

// Copy bandwidth of the memory `backend`'s weights live in (device memory for CUDA, host memory
// otherwise), bytes read plus written per second, measured now: the denominator of the decode
// bandwidth figure (DESIGN.md §4).
double measure_copy_bandwidth(const Backend& backend, int threads);

}  // namespace realizar
