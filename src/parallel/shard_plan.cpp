#include "parallel/shard_plan.h"

#include <fmt/format.h>

#include <algorithm>
#include <numeric>

#include "realizar/error.h"
#include "realizar/tensor_type.h"

namespace realizar::parallel {
namespace {

int64_t block_size(const WeightTensor& t) { return tensor_type_info(t.type).block_size; }

// Rank r's share of `count` items given out in whole `unit`s, as evenly as they go:
// units [r * U / N, (r + 1) * U / N).
IndexRange share(int64_t count, int64_t unit, int rank, int ranks) {
  const int64_t units = count / unit;
  return {rank * units / ranks * unit, (rank + 1) * units / ranks * unit};
}

// The block every layer's ffn_down column split must respect: the least common multiple of their
// types' block sizes (a single 256 for the K-quant mixes, 32 with Q8_0, 1 for float types).
int64_t ffn_block(const ModelWeights& weights) {
  int64_t block = 1;
  for (const LayerWeights& l : weights.layers) block = std::lcm(block, block_size(l.ffn_down));
  return block;
}

// The plan's ranges, once the checks of refusal() passed.
TensorParallelPlan shapes(const ModelConfig& c, const ModelWeights& weights, int ranks) {
  TensorParallelPlan plan;
  plan.ranks = ranks;
  plan.head_dim = c.head_dim;
  plan.ffn_block = ffn_block(weights);
  plan.vocab_rows_per_rank = (c.vocab_size + ranks - 1) / ranks;
  const int64_t group = c.head_count / c.head_count_kv;
  const int64_t kv_per_rank = c.head_count_kv / ranks;
  for (int r = 0; r < ranks; ++r) {
    RankShard s;
    s.kv_heads = {r * kv_per_rank, (r + 1) * kv_per_rank};
    s.query_heads = {s.kv_heads.begin * group, s.kv_heads.end * group};
    s.ffn = share(c.feed_forward_length, plan.ffn_block, r, ranks);
    s.vocab = {std::min(r * plan.vocab_rows_per_rank, c.vocab_size),
               std::min((r + 1) * plan.vocab_rows_per_rank, c.vocab_size)};
    plan.shards.push_back(s);
  }
  return plan;
}

// Why the model cannot be split over `ranks` ranks; empty when it can. Query heads need no check
// of their own: ModelConfig::from_gguf checks that head_count_kv divides head_count, so KV heads
// that divide by `ranks` carry whole GQA groups of query heads with them.
std::string refusal(const ModelConfig& c, const ModelWeights& weights, int ranks) {
  if (ranks < 1) return fmt::format("tensor parallelism needs at least 1 rank, got {}", ranks);
  const std::string cannot = fmt::format("cannot split the model over {} ranks", ranks);
  if (ranks > c.head_count_kv) {
    return fmt::format("{}: it has {} KV heads, and each rank needs whole ones", cannot, c.head_count_kv);
  }
  if (c.head_count_kv % ranks != 0) {
    return fmt::format("{}: its {} KV heads do not divide by {}", cannot, c.head_count_kv, ranks);
  }
  const int64_t block = ffn_block(weights);
  if (c.feed_forward_length / block < ranks) {
    return fmt::format("{}: its feed-forward width {} is less than {} ranks times the {}-column blocks of ffn_down",
                       cannot, c.feed_forward_length, ranks, block);
  }
  const TensorParallelPlan plan = shapes(c, weights, ranks);
  if (plan.shards.back().vocab.size() <= 0) {
    return fmt::format("{}: its {} tokens in shards of {} leave the last rank no LM-head rows", cannot,
                       c.vocab_size, plan.vocab_rows_per_rank);
  }
  for (size_t l = 0; l < weights.layers.size(); ++l) {
    const WeightTensor& o = weights.layers[l].attn_output;
    for (int r = 1; r < ranks; ++r) {
      const int64_t column = plan.q_dims(r).begin;
      if (column % block_size(o) != 0) {
        return fmt::format(
            "{}: rank {}'s columns of blk.{}.attn_output.weight would start at column {} (query head {}), "
            "inside one of its {}-column {} blocks",
            cannot, r, l, column, plan.shards[static_cast<size_t>(r)].query_heads.begin, block_size(o),
            tensor_type_name(o.type));
      }
    }
  }
  return {};
}

// The one walk over ModelWeights' fields, for const and mutable weights alike.
template <class Weights, class Visit>
void visit_weights(Weights& m, const Visit& visit) {
  const auto present = [&](const std::string& name, WeightRole role, auto& t) {
    if (t.present()) visit(name, role, t);
  };
  present("token_embd.weight", WeightRole::TokenEmbedding, m.token_embd);
  for (size_t i = 0; i < m.layers.size(); ++i) {
    auto& l = m.layers[i];
    const std::string p = "blk." + std::to_string(i) + ".";
    present(p + "attn_norm.weight", WeightRole::AttnNorm, l.attn_norm);
    present(p + "attn_norm.bias", WeightRole::AttnNormBias, l.attn_norm_bias);
    present(p + "attn_q.weight", WeightRole::AttnQ, l.attn_q);
    present(p + "attn_k.weight", WeightRole::AttnK, l.attn_k);
    present(p + "attn_v.weight", WeightRole::AttnV, l.attn_v);
    present(p + "attn_q.bias", WeightRole::AttnQBias, l.attn_q_bias);
    present(p + "attn_k.bias", WeightRole::AttnKBias, l.attn_k_bias);
    present(p + "attn_v.bias", WeightRole::AttnVBias, l.attn_v_bias);
    present(p + "attn_output.weight", WeightRole::AttnOutput, l.attn_output);
    present(p + "attn_output.bias", WeightRole::AttnOutputBias, l.attn_output_bias);
    present(p + "ffn_norm.weight", WeightRole::FfnNorm, l.ffn_norm);
    present(p + "ffn_gate.weight", WeightRole::FfnGate, l.ffn_gate);
    present(p + "ffn_up.weight", WeightRole::FfnUp, l.ffn_up);
    present(p + "ffn_up.bias", WeightRole::FfnUpBias, l.ffn_up_bias);
    present(p + "ffn_down.weight", WeightRole::FfnDown, l.ffn_down);
    present(p + "ffn_down.bias", WeightRole::FfnDownBias, l.ffn_down_bias);
  }
  present("output_norm.weight", WeightRole::OutputNorm, m.output_norm);
  present("output_norm.bias", WeightRole::OutputNormBias, m.output_norm_bias);
  // Tied: the output's rows are token_embd's (all of them, or a rank's row view of them).
  const uint8_t* embedding_end = m.token_embd.data + m.token_embd.rows * m.token_embd.row_bytes;
  const bool tied = m.token_embd.present() && m.output.data >= m.token_embd.data && m.output.data < embedding_end;
  present(tied ? "token_embd.weight" : "output.weight", WeightRole::Output, m.output);
  present("output.bias", WeightRole::OutputBias, m.output_bias);
}

std::string workable_list(const ModelConfig& c, const ModelWeights& weights) {
  return fmt::format("{}", fmt::join(workable_rank_counts(c, weights), ", "));
}

}  // namespace

IndexRange TensorParallelPlan::q_dims(int rank) const {
  const IndexRange heads = shards[static_cast<size_t>(rank)].query_heads;
  return {heads.begin * head_dim, heads.end * head_dim};
}

IndexRange TensorParallelPlan::kv_dims(int rank) const {
  const IndexRange heads = shards[static_cast<size_t>(rank)].kv_heads;
  return {heads.begin * head_dim, heads.end * head_dim};
}

TensorParallelPlan plan_tensor_parallel(const ModelConfig& config, const ModelWeights& weights, int ranks) {
  const std::string why = refusal(config, weights, ranks);
  if (!why.empty()) {
    fail("{} (tensor-parallel sizes that work for this model: {})", why, workable_list(config, weights));
  }
  return shapes(config, weights, ranks);
}

std::vector<int> workable_rank_counts(const ModelConfig& config, const ModelWeights& weights) {
  std::vector<int> counts;
  for (int n = 1; n <= config.head_count_kv; ++n) {
    if (refusal(config, weights, n).empty()) counts.push_back(n);
  }
  return counts;
}

ModelConfig rank_config(const ModelConfig& config, const TensorParallelPlan& plan, int rank) {
  if (rank < 0 || rank >= plan.ranks) fail("rank_config: rank {} outside the plan's {} ranks", rank, plan.ranks);
  const RankShard& s = plan.shards[static_cast<size_t>(rank)];
  ModelConfig c = config;
  c.head_count = s.query_heads.size();
  c.head_count_kv = s.kv_heads.size();
  c.feed_forward_length = s.ffn.size();
  return c;
}

bool is_vector(WeightRole role) {
  switch (role) {
    case WeightRole::TokenEmbedding:
    case WeightRole::AttnQ:
    case WeightRole::AttnK:
    case WeightRole::AttnV:
    case WeightRole::AttnOutput:
    case WeightRole::FfnGate:
    case WeightRole::FfnUp:
    case WeightRole::FfnDown:
    case WeightRole::Output:
      return false;
    case WeightRole::AttnNorm:
    case WeightRole::AttnNormBias:
    case WeightRole::AttnQBias:
    case WeightRole::AttnKBias:
    case WeightRole::AttnVBias:
    case WeightRole::AttnOutputBias:
    case WeightRole::FfnNorm:
    case WeightRole::FfnUpBias:
    case WeightRole::FfnDownBias:
    case WeightRole::OutputNorm:
    case WeightRole::OutputNormBias:
    case WeightRole::OutputBias:
      return true;
  }
  fail("unknown weight role {}", static_cast<int>(role));
}

SplitKind split_kind(WeightRole role) {
  switch (role) {
    case WeightRole::TokenEmbedding:
    case WeightRole::AttnNorm:
    case WeightRole::AttnNormBias:
    case WeightRole::FfnNorm:
    case WeightRole::OutputNorm:
    case WeightRole::OutputNormBias:
      return SplitKind::Replicated;
    case WeightRole::AttnQ:
    case WeightRole::AttnK:
    case WeightRole::AttnV:
    case WeightRole::AttnQBias:
    case WeightRole::AttnKBias:
    case WeightRole::AttnVBias:
    case WeightRole::FfnGate:
    case WeightRole::FfnUp:
    case WeightRole::FfnUpBias:
    case WeightRole::Output:
    case WeightRole::OutputBias:
      return SplitKind::Rows;
    case WeightRole::AttnOutput:
    case WeightRole::FfnDown:
      return SplitKind::Columns;
    case WeightRole::AttnOutputBias:
    case WeightRole::FfnDownBias:
      return SplitKind::AfterReduce;
  }
  fail("unknown weight role {}", static_cast<int>(role));
}

IndexRange split_range(const TensorParallelPlan& plan, WeightRole role, int rank) {
  if (rank < 0 || rank >= plan.ranks) fail("split_range: rank {} outside the plan's {} ranks", rank, plan.ranks);
  const RankShard& s = plan.shards[static_cast<size_t>(rank)];
  switch (role) {
    case WeightRole::AttnQ:
    case WeightRole::AttnQBias:
    case WeightRole::AttnOutput:
      return plan.q_dims(rank);
    case WeightRole::AttnK:
    case WeightRole::AttnV:
    case WeightRole::AttnKBias:
    case WeightRole::AttnVBias:
      return plan.kv_dims(rank);
    case WeightRole::FfnGate:
    case WeightRole::FfnUp:
    case WeightRole::FfnUpBias:
    case WeightRole::FfnDown:
      return s.ffn;
    case WeightRole::Output:
    case WeightRole::OutputBias:
      return s.vocab;
    case WeightRole::TokenEmbedding:
    case WeightRole::AttnNorm:
    case WeightRole::AttnNormBias:
    case WeightRole::AttnOutputBias:
    case WeightRole::FfnNorm:
    case WeightRole::FfnDownBias:
    case WeightRole::OutputNorm:
    case WeightRole::OutputNormBias:
      fail("split_range: weight role {} is not split by ranges", static_cast<int>(role));
  }
  fail("unknown weight role {}", static_cast<int>(role));
}

void for_each_weight(const ModelWeights& weights,
                     const std::function<void(const std::string&, WeightRole, const WeightTensor&)>& visit) {
  visit_weights(weights, visit);
}

void for_each_weight(ModelWeights& weights,
                     const std::function<void(const std::string&, WeightRole, WeightTensor&)>& visit) {
  visit_weights(weights, visit);
}

std::vector<TensorSplit> tensor_splits(const TensorParallelPlan& plan, const ModelWeights& weights) {
  std::vector<TensorSplit> splits;
  for_each_weight(weights, [&](const std::string& name, WeightRole role, const WeightTensor& t) {
    TensorSplit split{name, role, split_kind(role), 0, {}};
    if (split.kind == SplitKind::Rows) split.extent = is_vector(role) ? t.cols : t.rows;
    if (split.kind == SplitKind::Columns) split.extent = t.cols;
    if (split.kind == SplitKind::Rows || split.kind == SplitKind::Columns) {
      for (int r = 0; r < plan.ranks; ++r) split.ranges.push_back(split_range(plan, role, r));
    }
    splits.push_back(std::move(split));
  });
  return splits;
}

}  // namespace realizar::parallel
