// The simulated tensor-parallel forward pass: the definition of a correct tensor-parallel split,
// as the reference backend (src/backend/reference) is the definition of a correct forward pass.
// The CUDA implementation's ranks are tested against it, shard for shard (the same plan).
//
// N ranks run one after another on the calling thread, each with its shard of every layer
// (shard_plan.h, shard_weights.h), its own KV cache (its KV heads' keys and values) and the
// reference backend's blocks (reference_math.h: float32 activations, float64 accumulation):
//   - each layer's norms run on the replicated activations, as every rank would run them;
//   - attention: rank r computes its heads' attention output times its O columns, a partial sum
//     of O's output; the all-reduce sums the partials in rank order in double, adds O's bias once
//     and rounds to float; the residual add follows;
//   - MLP likewise: rank r's down columns times the activation of its gate/up rows, all-reduced,
//     plus down's bias;
//   - LM head: rank r computes the logits of its vocabulary rows into a shard of
//     vocab_rows_per_rank rows (padding rows -inf); forward() gathers the shards in rank order;
//   - sample(): plain greedy rows without log-probabilities take the arg max reduced across ranks
//     (rank_argmax on each shard, then reduce_argmax); other rows are sampled on the host from the
//     gathered logits (what a gather to one rank would do).
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <span>

#include "realizar/backend.h"

namespace realizar::parallel {

// A model split over `ranks` ranks (plan_tensor_parallel: throws realizar::Error naming the
// sizes that work when it cannot be), behind the Backend interface; options.cache_slots token
// slots on every rank. The weights must outlive the backend.
std::unique_ptr<Backend> make_simulated_tensor_parallel_backend(const ModelConfig& config,
                                                                const ModelWeights& weights, int ranks,
                                                                const BackendOptions& options);

// One rank's greedy candidate: its largest logit and the lowest token id holding it.
struct RankArgmax {
  float logit = -INFINITY;
  int32_t token = -1;  // -1: every logit of the shard is -inf (or it is empty)
};

// The candidate of an LM-head shard whose logits[i] is token first_token + i. Throws
// realizar::Error naming the token when a logit is NaN.
RankArgmax rank_argmax(std::span<const float> logits, int64_t first_token);

// The cross-rank reduction, candidates in rank order (ascending token ranges): the largest logit,
// the lowest token on ties — greedy_token (sampling.h) over the gathered logits. Throws
// realizar::Error when every logit is -inf.
int32_t reduce_argmax(std::span<const RankArgmax> candidates);

}  // namespace realizar::parallel
