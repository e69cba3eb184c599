// The reference backend: plain scalar C++, float32 activations with float64 accumulation,
// weights dequantized row by row with the scalar dequantizer (its blocks: reference_math.h). Slow
// on purpose and written to be read: it is the definition of correct that the CPU and CUDA
// backends are tested against, and it is itself tested against Hugging Face transformers
// (tests/golden_test.cpp).
#pragma once

#include <memory>

#include "realizar/backend.h"

namespace realizar {

// options.cache_slots: KV cache storage in token slots, over all sequences (float32). The
// weights must outlive the backend.
std::unique_ptr<Backend> make_reference_backend(const ModelConfig& config,
                                                const ModelWeights& weights, const BackendOptions& options);

}  // namespace realizar
