// Tensor parallelism's sharding plan: which part of every tensor each of N ranks (GPUs) holds,
// after Megatron-LM's split of the transformer layer (Shoeybi et al. 2019, arXiv:1909.08053, §3).
// Every rank runs every layer on its part of each matrix, so each reads 1/N of the weights per
// token, and the ranks exchange two all-reduces of a hidden-size vector per layer.
//
//  - Attention (Q, K, V by output rows; O by input columns), by heads: rank r holds whole KV heads
//    and the query heads of their GQA groups (Ainslie et al. 2023, arXiv:2305.13245: query head h
//    reads KV head h / group), so its heads attend with its own keys and values only. Column c of
//    O multiplies dimension c % head_dim of query head c / head_dim, so the rank's attention
//    output times its O columns is its part of a sum: the all-reduce after O completes it.
//  - MLP (gate, up by output rows; down by input columns), by feed-forward units: the activation
//    (SwiGLU, GELU) is element-wise, so each rank's units need nothing from the others, and the
//    all-reduce after down completes the output.
//  - Biases: Q/K/V/up biases split with their rows; O's and down's are added once, after the
//    all-reduce (SplitKind::AfterReduce). Norms and the token embedding are replicated.
//  - The LM head is split by vocabulary rows: each rank computes the logits of a contiguous range
//    of tokens, shards padded to ceil(vocab / N) rows so they gather into equal parts; greedy
//    decoding reduces each rank's (largest logit, token) across ranks.
//  - The KV cache is split by KV head: each rank stores its heads' keys and values.
//
// Column splits happen at quant-block boundaries: a quantized row is a sequence of blocks of
// tensor_type_info(type).block_size elements (the 256-element super-block for K-quants), so whole
// blocks of columns are a contiguous byte range of each row; a split inside a block is refused.
// Row splits have no such constraint (rows are stored whole, one after another).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "realizar/model.h"

namespace realizar::parallel {

// Indices [begin, end) of rows, columns, heads or tokens.
struct IndexRange {
  int64_t begin = 0;
  int64_t end = 0;

  int64_t size() const { return end - begin; }
  bool operator==(const IndexRange&) const = default;
};

// What one rank holds, in the unsharded model's indices.
struct RankShard {
  IndexRange kv_heads;     // its KV heads: its slice of K, V and the KV cache
  IndexRange query_heads;  // kv_heads times the GQA group: its slice of Q and of O's columns
  IndexRange ffn;          // feed-forward units: rows of gate and up, columns of down
  IndexRange vocab;        // LM-head rows (token ids) whose logits it computes
};

struct TensorParallelPlan {
  int ranks = 1;
  int64_t head_dim = 0;
  int64_t ffn_block = 1;            // units go to ranks in multiples of this: every ffn_down's block
  int64_t vocab_rows_per_rank = 0;  // ceil(vocab / ranks): each LM-head shard padded to this many rows
  std::vector<RankShard> shards;    // one per rank, in rank order

  // Rows of Q (and columns of O) rank r holds: its query heads' dimensions.
  IndexRange q_dims(int rank) const;
  // Rows of K and V rank r holds: its KV heads' dimensions (each of its cache's tokens holds
  // kv_dims(rank).size() keys and as many values per layer).
  IndexRange kv_dims(int rank) const;
};

// Plans the split of the model over `ranks` ranks: KV heads in equal whole numbers per rank,
// feed-forward units in whole ffn_down blocks as evenly as they go (the first ranks get one block
// fewer when they do not divide), vocabulary rows ceil(vocab / ranks) per rank. Throws
// realizar::Error when it cannot split: `ranks` below 1; more ranks than KV heads, or KV heads not
// dividing by `ranks`; a rank's O columns starting inside a quant block of some attn_output; fewer
// feed-forward blocks than ranks. Each message ends with the tensor-parallel sizes that work for
// this model.
TensorParallelPlan plan_tensor_parallel(const ModelConfig& config, const ModelWeights& weights, int ranks);

// The tensor-parallel sizes plan_tensor_parallel accepts for this model, ascending (1 always).
std::vector<int> workable_rank_counts(const ModelConfig& config, const ModelWeights& weights);

// The config rank `rank` runs its shard with: head_count, head_count_kv and feed_forward_length
// are its own (so q_dim() and kv_dim() are its shard's); everything else is the model's. Throws
// realizar::Error for a rank outside the plan.
ModelConfig rank_config(const ModelConfig& config, const TensorParallelPlan& plan, int rank);

// ---- per tensor ----------------------------------------------------------------------------------

// Each tensor of ModelWeights by its part in the model (one per field).
enum class WeightRole {
  TokenEmbedding,
  AttnNorm, AttnNormBias,
  AttnQ, AttnK, AttnV, AttnQBias, AttnKBias, AttnVBias,
  AttnOutput, AttnOutputBias,
  FfnNorm, FfnGate, FfnUp, FfnUpBias, FfnDown, FfnDownBias,
  OutputNorm, OutputNormBias,
  Output, OutputBias,
};

enum class SplitKind {
  Replicated,   // every rank holds the whole tensor
  Rows,         // rank r holds rows ranges[r] (of a vector: elements ranges[r])
  Columns,      // rank r holds columns ranges[r] of every row; its product is a partial sum
  AfterReduce,  // a bias of a Columns-split matrix: every rank holds it, it is added once after the all-reduce
};

// How tensors of `role` split (the one table of the plan).
SplitKind split_kind(WeightRole role);

// Whether tensors of `role` are vectors (norms, biases: one row of elements), else matrices.
bool is_vector(WeightRole role);

// The rows (SplitKind::Rows) or columns (SplitKind::Columns) of a `role` tensor that rank `rank`
// holds; throws realizar::Error for a role that is not split by ranges.
IndexRange split_range(const TensorParallelPlan& plan, WeightRole role, int rank);

// Visits every present tensor of `weights` with its GGUF name (llama.cpp's: "blk.3.attn_q.weight";
// a fused attn_qkv shows as its Q, K and V views) and role: token_embd, each layer's tensors in
// LayerWeights order, output_norm, output. A tied output (its rows are token_embd's, all of them
// or a rank's share) is visited as "token_embd.weight" with role Output.
void for_each_weight(const ModelWeights& weights,
                     const std::function<void(const std::string& name, WeightRole role, const WeightTensor& tensor)>& visit);
void for_each_weight(ModelWeights& weights,
                     const std::function<void(const std::string& name, WeightRole role, WeightTensor& tensor)>& visit);

// One tensor's split over the ranks.
struct TensorSplit {
  std::string name;
  WeightRole role;
  SplitKind kind;
  int64_t extent = 0;              // length of the split dimension: rows of a matrix, elements of a vector, columns
  std::vector<IndexRange> ranges;  // per rank (Rows, Columns); empty for Replicated and AfterReduce
};

// The split of every tensor for_each_weight visits, in its order.
std::vector<TensorSplit> tensor_splits(const TensorParallelPlan& plan, const ModelWeights& weights);

}  // namespace realizar::parallel
