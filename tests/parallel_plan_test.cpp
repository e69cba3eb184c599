// The tensor-parallel sharding plan (src/parallel/shard_plan.h) on the tensor layouts of the real
// Qwen2.5 presets (synth_tensor_layout: the names, shapes and quant types `apr synth` writes) for
// 1, 2, 4 and 8 ranks: every tensor is covered, split ranges tile it exactly (no gap, no overlap),
// column splits fall on quant-block boundaries, heads go to ranks in whole GQA groups; and the
// sizes a model cannot be split into are refused with messages that say which sizes work.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "parallel/shard_plan.h"
#include "realizar/convert.h"
#include "realizar/error.h"
#include "realizar/tensor_type.h"

namespace realizar::parallel {
namespace {

using ::testing::HasSubstr;

// The plan reads tensor shapes and types only, so the tensors of a preset need no bytes (a 32B
// model's would be tens of GB): present tensors point at one of these markers. for_each_weight
// tells a tied output by its data lying within token_embd's bytes, so the other tensors' marker
// comes before the embedding's.
const uint8_t kMarkers[2] = {};
const uint8_t* const kTensorMarker = &kMarkers[0];
const uint8_t* const kEmbeddingMarker = &kMarkers[1];

struct LayoutModel {
  ModelConfig config;
  ModelWeights weights;
  std::map<std::string, TensorPlan> layout;  // by GGUF name
};

// The hyper-parameters `apr synth` writes for the preset, as ModelConfig::from_gguf reads them.
ModelConfig preset_config(const SynthPreset& p) {
  ModelConfig c;
  c.architecture = p.architecture == "qwen2" ? Architecture::Qwen2 : Architecture::Llama;
  c.architecture_name = p.architecture;
  c.vocab_size = p.vocab;
  c.context_length = p.context;
  c.embedding_length = p.hidden;
  c.block_count = p.layers;
  c.feed_forward_length = p.ffn;
  c.head_count = p.heads;
  c.head_count_kv = p.kv_heads;
  c.head_dim = p.hidden / p.heads;
  c.rope_dim = c.head_dim;
  return c;
}

// ModelWeights whose tensors have the layout's types and shapes (and no bytes).
LayoutModel layout_model(const SynthPreset& preset, QuantScheme scheme) {
  LayoutModel m;
  m.config = preset_config(preset);
  for (TensorPlan& plan : synth_tensor_layout(preset, preset.vocab, scheme)) {
    m.layout.emplace(plan.name, std::move(plan));
  }
  // Every field present first, so that for_each_weight visits all of them; those the layout lacks
  // are then made absent.
  const auto all_present = [](WeightTensor& t) { t.data = kTensorMarker; };
  m.weights.layers.resize(static_cast<size_t>(preset.layers));
  for (LayerWeights& l : m.weights.layers) {
    for (WeightTensor* t : {&l.attn_norm, &l.attn_norm_bias, &l.attn_q, &l.attn_k, &l.attn_v,
                            &l.attn_q_bias, &l.attn_k_bias, &l.attn_v_bias, &l.attn_output,
                            &l.attn_output_bias, &l.ffn_norm, &l.ffn_gate, &l.ffn_up, &l.ffn_up_bias,
                            &l.ffn_down, &l.ffn_down_bias}) {
      all_present(*t);
    }
  }
  for (WeightTensor* t : {&m.weights.output_norm, &m.weights.output_norm_bias, &m.weights.output,
                          &m.weights.output_bias}) {
    all_present(*t);
  }
  m.weights.token_embd.data = kEmbeddingMarker;
  if (preset.tied_embeddings) m.weights.output.data = kEmbeddingMarker;
  for_each_weight(m.weights, [&](const std::string& name, WeightRole, WeightTensor& t) {
    const auto it = m.layout.find(name);
    if (it == m.layout.end()) {
      t = WeightTensor{};
      return;
    }
    const TensorPlan& plan = it->second;
    t.type = plan.type;
    t.cols = static_cast<int64_t>(plan.dims[0]);
    t.rows = plan.dims.size() > 1 ? static_cast<int64_t>(plan.dims[1]) : 1;
    t.row_bytes = row_bytes(plan.type, plan.dims[0]);
  });
  return m;
}

// The split each tensor must have, from its name alone (shard_plan.h's table, restated).
SplitKind expected_kind(const std::string& name, WeightRole role) {
  const auto has = [&](const char* part) { return name.find(part) != std::string::npos; };
  if (role == WeightRole::Output) return SplitKind::Rows;  // also a tied token_embd.weight
  if (has("_norm.") || name == "token_embd.weight") return SplitKind::Replicated;
  if (has("attn_q.") || has("attn_k.") || has("attn_v.") || has("ffn_gate.") || has("ffn_up.")) {
    return SplitKind::Rows;
  }
  if (has("attn_output.weight") || has("ffn_down.weight")) return SplitKind::Columns;
  if (has("attn_output.bias") || has("ffn_down.bias")) return SplitKind::AfterReduce;
  ADD_FAILURE() << "no expectation for " << name;
  return SplitKind::Replicated;
}

// The length of the dimension a split cuts, from the layout's GGUF dims (ne0 = columns).
int64_t expected_extent(const TensorPlan& plan, SplitKind kind) {
  if (kind == SplitKind::Columns || plan.dims.size() == 1) return static_cast<int64_t>(plan.dims[0]);
  return static_cast<int64_t>(plan.dims[1]);
}

void expect_tiles(const TensorSplit& split, int ranks) {
  ASSERT_EQ(split.ranges.size(), static_cast<size_t>(ranks)) << split.name;
  EXPECT_EQ(split.ranges.front().begin, 0) << split.name;
  EXPECT_EQ(split.ranges.back().end, split.extent) << split.name;
  for (int r = 0; r < ranks; ++r) {
    EXPECT_GT(split.ranges[static_cast<size_t>(r)].size(), 0) << split.name << " rank " << r;
    if (r + 1 < ranks) {
      EXPECT_EQ(split.ranges[static_cast<size_t>(r)].end, split.ranges[static_cast<size_t>(r) + 1].begin)
          << split.name << " ranks " << r << " and " << r + 1;
    }
  }
}

// Expected refusals of the Qwen2.5 presets (none for tp 1 and 2):
//  - 0.5b and 1.5b have 2 KV heads: 4 and 8 ranks cannot each hold whole ones, in every scheme;
//  - 7b has 4 KV heads: 8 ranks likewise; under q4_k_m its attn_output is Q4_K (3584 columns =
//    14 super-blocks) and 4 ranks would start rank 1 at column 7 * 128 = 896, inside a block;
//  - 32b (8 KV heads) under q4_k_m: 8 ranks would start rank 1 at 5 * 128 = 640 (Q4_K again).
std::string expected_refusal(const std::string& preset, QuantScheme scheme, int ranks) {
  const std::string works_2 = "(tensor-parallel sizes that work for this model: 1, 2)";
  if ((preset == "qwen2.5-0.5b" || preset == "qwen2.5-1.5b") && ranks > 2) {
    return fmt::format("cannot split the model over {} ranks: it has 2 KV heads, and each rank needs whole ones {}",
                       ranks, works_2);
  }
  const bool k_quants = scheme == QuantScheme::Q4_K_M;
  if (preset == "qwen2.5-7b" && ranks == 8) {
    return fmt::format("cannot split the model over 8 ranks: it has 4 KV heads, and each rank needs whole ones {}",
                       k_quants ? works_2 : "(tensor-parallel sizes that work for this model: 1, 2, 4)");
  }
  if (preset == "qwen2.5-7b" && ranks == 4 && k_quants) {
    return "cannot split the model over 4 ranks: rank 1's columns of blk.0.attn_output.weight would start at "
           "column 896 (query head 7), inside one of its 256-column Q4_K blocks " + works_2;
  }
  if (preset == "qwen2.5-32b" && ranks == 8 && k_quants) {
    return "cannot split the model over 8 ranks: rank 1's columns of blk.0.attn_output.weight would start at "
           "column 640 (query head 5), inside one of its 256-column Q4_K blocks "
           "(tensor-parallel sizes that work for this model: 1, 2, 4)";
  }
  return {};
}

class QwenPresetPlan : public ::testing::TestWithParam<QuantScheme> {};

TEST_P(QwenPresetPlan, EveryTensorTilesOrTheSizeIsRefusedWithWhatWorks) {
  const QuantScheme scheme = GetParam();
  int presets = 0;
  for (const SynthPreset& preset : synth_presets()) {
    if (preset.name.rfind("qwen2.5", 0) != 0) continue;
    ++presets;
    const LayoutModel m = layout_model(preset, scheme);
    for (const int ranks : {1, 2, 4, 8}) {
      SCOPED_TRACE(preset.name + " tp " + std::to_string(ranks));
      const std::string refusal = expected_refusal(preset.name, scheme, ranks);
      if (!refusal.empty()) {
        try {
          plan_tensor_parallel(m.config, m.weights, ranks);
          ADD_FAILURE() << "not refused";
        } catch (const Error& e) {
          EXPECT_EQ(std::string(e.what()), refusal);
        }
        continue;
      }
      const TensorParallelPlan plan = plan_tensor_parallel(m.config, m.weights, ranks);
      ASSERT_EQ(plan.shards.size(), static_cast<size_t>(ranks));

      std::multiset<std::string> visited;
      std::map<std::string, std::vector<IndexRange>> ranges;
      for (const TensorSplit& split : tensor_splits(plan, m.weights)) {
        visited.insert(split.name);
        ASSERT_EQ(split.kind, expected_kind(split.name, split.role)) << split.name;
        ranges[split.name + (split.role == WeightRole::Output ? " as output" : "")] = split.ranges;
        if (split.kind != SplitKind::Rows && split.kind != SplitKind::Columns) {
          EXPECT_TRUE(split.ranges.empty()) << split.name;
          continue;
        }
        const TensorPlan& tensor = m.layout.at(split.name);
        EXPECT_EQ(split.extent, expected_extent(tensor, split.kind)) << split.name;
        expect_tiles(split, ranks);
        if (split.kind == SplitKind::Columns) {
          const int64_t block = tensor_type_info(tensor.type).block_size;
          for (const IndexRange& r : split.ranges) {
            EXPECT_EQ(r.begin % block, 0) << split.name << " cuts a " << tensor_type_name(tensor.type) << " block";
          }
        }
      }
      // Every tensor of the layout is planned once (a tied token_embd twice: embedding and LM head).
      std::multiset<std::string> names;
      for (const auto& [name, plan_entry] : m.layout) names.insert(name);
      if (preset.tied_embeddings) names.insert("token_embd.weight");
      EXPECT_EQ(visited, names);

      const int64_t head_dim = preset.hidden / preset.heads, group = preset.heads / preset.kv_heads;
      for (int64_t l = 0; l < preset.layers; ++l) {
        const std::string p = "blk." + std::to_string(l) + ".";
        const auto& q = ranges.at(p + "attn_q.weight");
        const auto& k = ranges.at(p + "attn_k.weight");
        EXPECT_EQ(ranges.at(p + "attn_v.weight"), k);
        EXPECT_EQ(ranges.at(p + "attn_q.bias"), q);
        EXPECT_EQ(ranges.at(p + "attn_k.bias"), k);
        EXPECT_EQ(ranges.at(p + "attn_output.weight"), q);  // O's columns are the rank's query heads
        EXPECT_EQ(ranges.at(p + "ffn_gate.weight"), ranges.at(p + "ffn_up.weight"));
        EXPECT_EQ(ranges.at(p + "ffn_down.weight"), ranges.at(p + "ffn_up.weight"));
        for (int r = 0; r < ranks; ++r) {
          const IndexRange qr = q[static_cast<size_t>(r)], kr = k[static_cast<size_t>(r)];
          // Whole KV heads, equal per rank, each with its whole group of query heads.
          EXPECT_EQ(kr.begin % head_dim, 0);
          EXPECT_EQ(kr.size(), preset.kv_heads / ranks * head_dim);
          EXPECT_EQ(qr.begin, kr.begin * group);
          EXPECT_EQ(qr.size(), kr.size() * group);
          // Feed-forward units as even as whole blocks allow.
          const int64_t units = ranges.at(p + "ffn_down.weight")[static_cast<size_t>(r)].size();
          EXPECT_LE(std::abs(units - preset.ffn / ranks), plan.ffn_block);
        }
      }
      const auto& lm_head = ranges.at((preset.tied_embeddings ? "token_embd.weight" : "output.weight") +
                                      std::string(" as output"));
      for (int r = 0; r < ranks; ++r) {
        EXPECT_EQ(plan.kv_dims(r).size() * ranks, preset.kv_heads * head_dim);
        EXPECT_EQ(plan.shards[static_cast<size_t>(r)].vocab, lm_head[static_cast<size_t>(r)]);
        EXPECT_LE(lm_head[static_cast<size_t>(r)].size(), plan.vocab_rows_per_rank);
      }
      EXPECT_EQ(plan.vocab_rows_per_rank, (preset.vocab + ranks - 1) / ranks);
    }
  }
  EXPECT_EQ(presets, 4);
}

INSTANTIATE_TEST_SUITE_P(Schemes, QwenPresetPlan,
                         ::testing::Values(QuantScheme::F16, QuantScheme::Q8_0, QuantScheme::Q4_K_M),
                         [](const auto& info) { return std::string(quant_scheme_name(info.param)); });

TEST(ShardPlan, UnevenFeedForwardBlocksGoOneFewerToTheFirstRanks) {
  // qwen2.5-0.5b: ffn 4864 = 19 super-blocks of ffn_down (Q4_K / Q6_K under q4_k_m).
  const LayoutModel m = layout_model(synth_preset("qwen2.5-0.5b"), QuantScheme::Q4_K_M);
  const TensorParallelPlan plan = plan_tensor_parallel(m.config, m.weights, 2);
  EXPECT_EQ(plan.ffn_block, 256);
  EXPECT_EQ(plan.shards[0].ffn, (IndexRange{0, 9 * 256}));
  EXPECT_EQ(plan.shards[1].ffn, (IndexRange{9 * 256, 4864}));
  // Its attn_output (896 columns) falls back to Q5_0: 32-column blocks, rank 1 from column 448.
  EXPECT_EQ(plan.q_dims(1), (IndexRange{448, 896}));
}

TEST(ShardPlan, PaddedVocabularyShards) {
  // 152064 = 8 x 19008; tp 5 pads: ceil(152064 / 5) = 30413 rows, the last rank 30412.
  const LayoutModel m = layout_model(synth_preset("qwen2.5-32b"), QuantScheme::F16);
  SynthPreset five_kv = synth_preset("qwen2.5-32b");
  five_kv.heads = 40;
  five_kv.kv_heads = 5;
  const LayoutModel five = layout_model(five_kv, QuantScheme::F16);
  const TensorParallelPlan plan = plan_tensor_parallel(five.config, five.weights, 5);
  EXPECT_EQ(plan.vocab_rows_per_rank, 30413);
  EXPECT_EQ(plan.shards[3].vocab, (IndexRange{3 * 30413, 4 * 30413}));
  EXPECT_EQ(plan.shards[4].vocab, (IndexRange{4 * 30413, 152064}));
  EXPECT_EQ(plan_tensor_parallel(m.config, m.weights, 8).vocab_rows_per_rank, 19008);
}

std::string refusal_of(const LayoutModel& m, int ranks) {
  try {
    plan_tensor_parallel(m.config, m.weights, ranks);
  } catch (const Error& e) {
    return e.what();
  }
  return "accepted";
}

TEST(ShardPlan, RankCountsBelowOneAndNonDividingOnesAreRefused) {
  const LayoutModel m = layout_model(synth_preset("qwen2.5-7b"), QuantScheme::Q8_0);
  EXPECT_EQ(refusal_of(m, 0),
            "tensor parallelism needs at least 1 rank, got 0 (tensor-parallel sizes that work for this model: 1, 2, 4)");
  EXPECT_THAT(refusal_of(m, -3), HasSubstr("needs at least 1 rank, got -3"));
  EXPECT_EQ(refusal_of(m, 3),
            "cannot split the model over 3 ranks: its 4 KV heads do not divide by 3 "
            "(tensor-parallel sizes that work for this model: 1, 2, 4)");
  EXPECT_EQ(workable_rank_counts(m.config, m.weights), (std::vector<int>{1, 2, 4}));
}

TEST(ShardPlan, FewerFeedForwardBlocksThanRanksIsRefused) {
  // 8 KV heads, but a feed-forward width of 512 is two Q4_K super-blocks of ffn_down.
  SynthPreset p{"narrow", "llama", 512, 2, 8, 8, 512, 1000, 256, 1e4, 1e-5, false, false};
  const LayoutModel m = layout_model(p, QuantScheme::Q4_K_M);
  EXPECT_EQ(refusal_of(m, 4),
            "cannot split the model over 4 ranks: its feed-forward width 512 is less than 4 ranks times the "
            "256-column blocks of ffn_down (tensor-parallel sizes that work for this model: 1, 2)");
}

TEST(ShardPlan, AVocabularyThatLeavesARankNoRowsIsRefused) {
  // 5 tokens over 4 ranks: shards of 2 rows leave nothing for the last.
  SynthPreset p{"few-tokens", "llama", 64, 1, 4, 4, 128, 5, 256, 1e4, 1e-5, false, false};
  const LayoutModel m = layout_model(p, QuantScheme::F32);
  EXPECT_EQ(refusal_of(m, 4),
            "cannot split the model over 4 ranks: its 5 tokens in shards of 2 leave the last rank no LM-head "
            "rows (tensor-parallel sizes that work for this model: 1, 2)");
}

TEST(ShardPlan, RankConfigHasTheShardsHeadsAndUnits) {
  const LayoutModel m = layout_model(synth_preset("qwen2.5-32b"), QuantScheme::Q4_K_M);
  const TensorParallelPlan plan = plan_tensor_parallel(m.config, m.weights, 4);
  const ModelConfig c = rank_config(m.config, plan, 3);
  EXPECT_EQ(c.head_count, 10);
  EXPECT_EQ(c.head_count_kv, 2);
  EXPECT_EQ(c.kv_dim(), plan.kv_dims(3).size());
  EXPECT_EQ(c.q_dim(), plan.q_dims(3).size());
  EXPECT_EQ(c.feed_forward_length, 27648 - 81 * 256);  // 108 super-blocks: rank 3 has the last 27
  EXPECT_EQ(c.embedding_length, 5120);
  EXPECT_EQ(c.vocab_size, 152064);
}

TEST(ShardPlan, SplitRangeOfAnUnsplitRoleIsAnError) {
  const LayoutModel m = layout_model(synth_preset("qwen2.5-0.5b"), QuantScheme::F16);
  const TensorParallelPlan plan = plan_tensor_parallel(m.config, m.weights, 2);
  EXPECT_THROW(split_range(plan, WeightRole::AttnNorm, 0), Error);
  EXPECT_THROW(split_range(plan, WeightRole::AttnQ, 2), Error);
}

}  // namespace
}  // namespace realizar::parallel
