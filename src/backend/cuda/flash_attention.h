// The tile kernel of `attention` (kernels.h), which calls it: plain C++17 like kernels.h.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "backend/cuda/kernels.h"

namespace realizar::cuda {

// Enqueues the FlashAttention-2 kernel over `tiles` tiles of `step` (kernels.h, AttentionStep),
// each tile's key range split into `splits` ranges: with splits == 1 it writes out ([step tokens x
// q_dim]) and, when half_out is not null, its float16 copy for every tile token; otherwise each
// range's partial state goes to scratch rows (tile * flash_tile_tokens(group) + j) * splits + s, for
// the merge. The shape (head_dim, group), the splits and the scratch are checked by the caller;
// throws realizar::Error when the launch fails.
void enqueue_flash_attention(const AttentionParams& p, const float* q, const void* key_cache,
                             const void* value_cache, const AttentionStep& step, int64_t tiles, int splits,
                             const AttentionScratch& scratch, float* out, void* half_out, cudaStream_t stream);

}  // namespace realizar::cuda
