// The CPU backend: the reference backend's function (src/backend/reference) computed fast.
//
// - Matmuls use the fused dequantize-dot kernels of kernels.h: each matmul's input is quantized
//   once per token to the weights' activation type (Q8_K / Q8_0 / F32), then the weight rows are
//   split over the threads of a persistent pool, each thread taking a tile of rows against every
//   token of the batch, so a prompt reads each weight once (batched prefill) and a decode step
//   stays memory-bound. Activations are float32 with float32 accumulation.
// - Attention runs per (token, head) pair over the sequence's paged KV cache (float32 storage,
//   kv/kv_manager.h), causal, GQA.
// - All scratch memory is allocated at construction for a batch of up to 64 tokens and grows
//   when a larger batch arrives; a decode step does not allocate.
#pragma once

#include <cstdint>
#include <memory>

#include "realizar/backend.h"

namespace realizar {

// options: cache_slots (KV storage over all sequences), max_sequence_length (attention scratch),
// threads of the pool, the calling thread included (0: all hardware threads). The weights must
// outlive the backend. Throws realizar::Error when a weight type has no CPU kernel or the sizes
// are invalid.
std::unique_ptr<Backend> make_cpu_backend(const ModelConfig& config, const ModelWeights& weights,
                                          const BackendOptions& options);

}  // namespace realizar
