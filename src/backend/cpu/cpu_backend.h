// The CPU backend: the reference backend's function (src/backend/reference) computed fast, with the
// kernel set of the CPU it runs on (kernels.h, chosen at run time by CPUID).
//
// - Weights of the quantized types Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K and Q6_K are repacked
//   at construction into groups of 16 rows (packed_weights.h); every matmul, decode or prefill, is
//   a GEMM over those groups: the input rows are quantized once to 8 bits (ActBlockK or ActBlock32),
//   and each group is run against up to 64 tokens at a time by register-tiled kernels. Other
//   types (F32, F16, BF16, Q2_K, Q3_K) take a row-by-row float dot product.
// - One forward pass is one ThreadPool::run: the threads go through the layers together, split
//   each stage between them (matmul groups claimed dynamically, tokens, heads) and meet at a
//   spinning barrier between stages.
// - The KV cache stores float16 keys and values (half the bytes of float32: long contexts read
//   half as much), paged in the engine's 16-token blocks (kv/kv_manager.h). Attention runs per
//   KV head over a tile of queries (the query heads of its group, for up to 8 tokens of one
//   sequence): each cached key and value row is converted once for the whole tile.
// - Results: float32 activations and accumulation. A token's logits depend only on that token and
//   its sequence's cache: they are bit-identical whatever else is in the batch and whatever the
//   thread count, for one kernel set (kernels differ by rounding between sets).
// - All scratch memory is allocated at construction for a batch of up to 64 tokens and grows when a
//   larger batch arrives; a decode step does not allocate.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>

#include "backend/cpu/cpu_features.h"
#include "realizar/backend.h"

namespace realizar {

// options: cache_slots (KV storage over all sequences), max_sequence_length (attention), threads of
// the pool, the calling thread included (0: one per physical core). The weights must outlive the
// backend. Throws realizar::Error when a weight type has no CPU kernel or the sizes are invalid.
std::unique_ptr<Backend> make_cpu_backend(const ModelConfig& config, const ModelWeights& weights,
                                          const BackendOptions& options);

// As above with kernel set `isa` instead of the process's choice (tests compare the sets). Throws
// realizar::Error when this CPU cannot run it.
std::unique_ptr<Backend> make_cpu_backend(const ModelConfig& config, const ModelWeights& weights,
                                          const BackendOptions& options, cpu::Isa isa);

}  // namespace realizar
