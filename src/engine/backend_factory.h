// Chooses and builds the backend for a device request.
#pragma once

#include <memory>

#include "realizar/backend.h"
#include "realizar/engine.h"

namespace realizar {

// The device Device::Auto stands for here: CUDA when the CUDA backend is built and a GPU is
// present, else the CPU; other devices as given.
Device resolve_device(Device device);

// Bytes one token's keys and values take in the cache of `device`'s backend, over all layers
// (float32 on the CPU and reference backends, float16 on CUDA).
int64_t kv_bytes_per_token(Device device, const ModelConfig& config);

// Device::Auto picks CUDA when a GPU is present and the CUDA backend is built, else the CPU.
// Throws realizar::Error when the device is unavailable, and for options.tensor_parallel other
// than 1: the sharding plan's error when the model cannot be split that way (naming the sizes
// that work), else that no backend runs tensor-parallel ranks yet (never one GPU instead).
std::unique_ptr<Backend> make_backend(Device device, const Model& model, const BackendOptions& options);

// Copy bandwidth of the memory `backend`'s weights live in (device memory for CUDA, host memory
// otherwise), bytes read plus written per second, measured now: the denominator of the decode
// bandwidth figure (DESIGN.md §4).
double measure_copy_bandwidth(const Backend& backend, int threads);

}  // namespace realizar
