// The simulated tensor-parallel forward pass (src/parallel/simulated_tensor_parallel.h) on the
// golden checkpoints (tools/reference/golden_models.py through `apr convert`: Qwen2 with QKV
// biases and tied embeddings, LLaMA, phi-2 with biases everywhere and a parallel residual), in
// float32 and quantized: its logits equal the unsharded reference backend's within float32
// rounding of the all-reduce's partial sums, its greedy tokens (the cross-rank arg max) equal the
// reference's and transformers' exactly for float32 weights, every rank's KV cache follows the
// KV manager's copies; its shards reassemble the unsharded matrices.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <random>

#include "backend/reference/reference_backend.h"
#include "parallel/shard_plan.h"
#include "parallel/shard_weights.h"
#include "parallel/simulated_tensor_parallel.h"
#include "realizar/error.h"
#include "realizar/gguf.h"
#include "realizar/quant.h"
#include "realizar/sampling.h"
#include "test_support.h"

namespace realizar::parallel {
namespace {

// A converted golden checkpoint, opened.
struct GoldenModel {
  gguf::File file;
  ModelConfig config;
  ModelWeights weights;
  std::vector<int32_t> prompt;  // tests/data/golden/NAME.json
  std::vector<int32_t> greedy;  // transformers' 32 greedy tokens after the prompt
};

// Each (model, type) converted once per test program.
const GoldenModel& golden(const std::string& name, const std::string& type) {
  static testing::TempDir dir;
  static std::map<std::string, std::unique_ptr<GoldenModel>> models;
  std::unique_ptr<GoldenModel>& m = models[name + "-" + type];
  if (!m) {
    gguf::File file = gguf::File::open(testing::convert_golden_checkpoint(dir, name, type));
    ModelConfig config = ModelConfig::from_gguf(file);
    ModelWeights weights = ModelWeights::from_gguf(file, config);
    const auto meta = nlohmann::json::parse(
        testing::read_file(testing::source_dir() / "tests/data/golden" / (name + ".json")));
    m = std::make_unique<GoldenModel>(GoldenModel{std::move(file), config, weights,
                                                  meta.at("prompt").get<std::vector<int32_t>>(),
                                                  meta.at("greedy").get<std::vector<int32_t>>()});
  }
  return *m;
}

std::unique_ptr<testing::TestBackend> reference_of(const GoldenModel& m) {
  return testing::driven(make_reference_backend(m.config, m.weights, testing::cache_options(128)));
}

std::unique_ptr<testing::TestBackend> sharded(const GoldenModel& m, int ranks) {
  return testing::driven(
      make_simulated_tensor_parallel_backend(m.config, m.weights, ranks, testing::cache_options(128)));
}

std::vector<float> prefill_logits(testing::TestBackend& backend, const std::vector<int32_t>& prompt) {
  Batch batch;
  for (size_t i = 0; i < prompt.size(); ++i) batch.add(prompt[i], static_cast<int32_t>(i), 3, true);
  std::vector<float> logits;
  backend.forward(batch, logits);
  return logits;
}

// Prefill, then one decode step per token, each token the backend's greedy choice (sample()).
std::vector<int32_t> greedy_tokens(testing::TestBackend& backend, const std::vector<int32_t>& prompt, size_t count) {
  Batch batch;
  for (size_t i = 0; i < prompt.size(); ++i) {
    batch.add(prompt[i], static_cast<int32_t>(i), 0, i + 1 == prompt.size());
  }
  std::vector<int32_t> out, step;
  while (true) {
    backend.greedy(batch, step);
    out.push_back(step.at(0));
    if (out.size() == count) return out;
    batch.clear();
    batch.add(out.back(), static_cast<int32_t>(prompt.size() + out.size() - 1), 0, true);
  }
}

struct Case {
  std::string model;
  std::string type;  // apr convert --type
  int ranks;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.model << " " << c.type << " tp " << c.ranks; }

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  return info.param.model + "_" + info.param.type + "_tp" + std::to_string(info.param.ranks);
}

// The ranks' partial sums are rounded to float32 before the all-reduce adds them, where the
// unsharded pass rounds once: a few float32 ulps (2^-24 ~ 6e-8 relative) per layer. Measured: at
// most 1.3e-7 of the largest logit on these models; the bound is about 16 ulps.
constexpr double kRoundingTolerance = 1e-6;

class ShardedForward : public ::testing::TestWithParam<Case> {};

TEST_P(ShardedForward, LogitsEqualTheUnshardedReferenceWithinRounding) {
  const auto& [name, type, ranks] = GetParam();
  const GoldenModel& m = golden(name, type);
  const std::vector<float> want = prefill_logits(*reference_of(m), m.prompt);
  const std::vector<float> got = prefill_logits(*sharded(m, ranks), m.prompt);
  ASSERT_EQ(got.size(), want.size());
  EXPECT_LE(testing::relative_max_error(got, want), kRoundingTolerance);
  // One rank without O or down biases runs the reference's arithmetic operation for operation.
  const LayerWeights& first = m.weights.layers.front();
  if (ranks == 1 && !first.attn_output_bias.present() && !first.ffn_down_bias.present()) {
    EXPECT_EQ(got, want);
  }
}

// Every model in float32 at every size its shapes allow (phi-2 has 4 KV heads, the others 2), and
// quantized where the quant blocks allow the split (ShardedGolden.RefusedSplits shows the others).
INSTANTIATE_TEST_SUITE_P(
    Golden, ShardedForward,
    ::testing::Values(Case{"qwen2", "f32", 1}, Case{"qwen2", "f32", 2}, Case{"llama", "f32", 1},
                      Case{"llama", "f32", 2}, Case{"phi2", "f32", 1}, Case{"phi2", "f32", 2},
                      Case{"phi2", "f32", 4}, Case{"qwen2", "bf16", 2}, Case{"llama", "q8_0", 2},
                      Case{"llama", "q4_k_m", 2}, Case{"phi2", "q8_0", 2}),
    case_name);

class ShardedGreedy : public ::testing::TestWithParam<Case> {};

TEST_P(ShardedGreedy, TokensEqualTheReferenceAndTransformers) {
  const auto& [name, type, ranks] = GetParam();
  const GoldenModel& m = golden(name, type);
  const std::vector<int32_t> got = greedy_tokens(*sharded(m, ranks), m.prompt, m.greedy.size());
  EXPECT_EQ(got, greedy_tokens(*reference_of(m), m.prompt, m.greedy.size()));
  EXPECT_EQ(got, m.greedy);
}

INSTANTIATE_TEST_SUITE_P(Golden, ShardedGreedy,
                         ::testing::Values(Case{"qwen2", "f32", 2}, Case{"llama", "f32", 2},
                                           Case{"phi2", "f32", 2}, Case{"phi2", "f32", 4}),
                         case_name);

// Each rank's tensors by name and role (a tied token_embd is both the embedding and the LM head).
std::map<std::pair<std::string, WeightRole>, WeightTensor> tensors_by_name(const ModelWeights& weights) {
  std::map<std::pair<std::string, WeightRole>, WeightTensor> out;
  for_each_weight(weights, [&](const std::string& name, WeightRole role, const WeightTensor& t) {
    out[{name, role}] = t;
  });
  return out;
}

std::vector<float> dequantized_row(const WeightTensor& t, int64_t row) {
  std::vector<float> out(static_cast<size_t>(t.cols));
  dequantize_row(t.type, t.row(row), out.data(), t.cols);
  return out;
}

// Every rank's tensor dequantizes to its part of the unsharded one, bit for bit: replicated ones
// whole, row splits to their rows (a bias: its elements), column splits to their columns of every
// row; O's and down's biases are on no rank (they are added after the all-reduce).
TEST(ShardedGolden, ShardsReassembleTheUnshardedMatrices) {
  for (const Case& c : {Case{"llama", "q8_0", 2}, Case{"phi2", "f32", 4}, Case{"qwen2", "f32", 2}}) {
    SCOPED_TRACE(c.model + " " + c.type);
    const GoldenModel& m = golden(c.model, c.type);
    const TensorParallelPlan plan = plan_tensor_parallel(m.config, m.weights, c.ranks);
    const auto full = tensors_by_name(m.weights);
    std::map<SplitKind, int> checked;
    for (int r = 0; r < c.ranks; ++r) {
      const RankWeights shard = shard_weights(plan, m.config, m.weights, r);
      const auto mine = tensors_by_name(shard.weights);
      for (const TensorSplit& split : tensor_splits(plan, m.weights)) {
        const WeightTensor& t = full.at({split.name, split.role});
        const auto it = mine.find({split.name, split.role});
        if (split.kind == SplitKind::AfterReduce) {
          EXPECT_EQ(it, mine.end()) << split.name << " on rank " << r;
          ++checked[split.kind];
          continue;
        }
        ASSERT_NE(it, mine.end()) << split.name;
        const WeightTensor& part = it->second;
        const IndexRange range = split.ranges.empty() ? IndexRange{} : split.ranges[static_cast<size_t>(r)];
        const bool vector_rows = split.kind == SplitKind::Rows && t.rows == 1;
        ASSERT_EQ(part.rows, split.kind == SplitKind::Rows && !vector_rows ? range.size() : t.rows) << split.name;
        for (int64_t row = 0; row < part.rows; ++row) {
          const std::vector<float> got = dequantized_row(part, row);
          const std::vector<float> whole =
              dequantized_row(t, split.kind == SplitKind::Rows && !vector_rows ? range.begin + row : row);
          const int64_t offset = split.kind == SplitKind::Columns || vector_rows ? range.begin : 0;
          ASSERT_LE(offset + part.cols, t.cols) << split.name;
          EXPECT_EQ(std::memcmp(got.data(), whole.data() + offset, got.size() * sizeof(float)), 0)
              << split.name << " rank " << r << " row " << row;
        }
        ++checked[split.kind];
      }
    }
    EXPECT_GT(checked[SplitKind::Rows], 0);
    EXPECT_GT(checked[SplitKind::Columns], 0);
    EXPECT_GT(checked[SplitKind::Replicated], 0);
    if (c.model == "phi2") {
      EXPECT_GT(checked[SplitKind::AfterReduce], 0);
    }
  }
}

std::string refusal(const GoldenModel& m, int ranks) {
  try {
    make_simulated_tensor_parallel_backend(m.config, m.weights, ranks, testing::cache_options(16));
  } catch (const Error& e) {
    return e.what();
  }
  return "accepted";
}

TEST(ShardedGolden, RefusedSplits) {
  // qwen2: 6 query heads of 16 over 2 ranks start rank 1 at O column 48, inside a 32-column block.
  EXPECT_EQ(refusal(golden("qwen2", "q8_0"), 2),
            "cannot split the model over 2 ranks: rank 1's columns of blk.0.attn_output.weight would start at "
            "column 48 (query head 3), inside one of its 32-column Q8_0 blocks "
            "(tensor-parallel sizes that work for this model: 1)");
  // phi-2 under q4_k_m: ffn_down's 256 columns are one Q4_K super-block.
  EXPECT_EQ(refusal(golden("phi2", "q4_k_m"), 2),
            "cannot split the model over 2 ranks: its feed-forward width 256 is less than 2 ranks times the "
            "256-column blocks of ffn_down (tensor-parallel sizes that work for this model: 1)");
  EXPECT_EQ(refusal(golden("qwen2", "f32"), 4),
            "cannot split the model over 4 ranks: it has 2 KV heads, and each rank needs whole ones "
            "(tensor-parallel sizes that work for this model: 1, 2)");
  EXPECT_EQ(refusal(golden("phi2", "q8_0"), 4),
            "cannot split the model over 4 ranks: rank 1's columns of blk.0.attn_output.weight would start at "
            "column 16 (query head 1), inside one of its 32-column Q8_0 blocks "
            "(tensor-parallel sizes that work for this model: 1, 2)");
}

TEST(ShardedGolden, ForkedSequencesCopyBlocksOnEveryRank) {
  // Sequence 0 holds 20 tokens (a full block and 4 slots of the second); sequence 1 forks it,
  // sharing both blocks, so its first write copies the partial block (KvManager's copy-on-write,
  // run by BatchRunner through copy_blocks). Both then continue with different tokens.
  const GoldenModel& m = golden("llama", "f32");
  const auto run = [&](testing::TestBackend& backend) {
    Batch prompt;
    for (int32_t i = 0; i < 20; ++i) prompt.add(m.prompt[static_cast<size_t>(i) % m.prompt.size()], i, 0, false);
    std::vector<float> logits;
    backend.forward(prompt, logits);
    backend.runner().kv().fork(0, 1);
    Batch step;
    step.add(5, 20, 0, true);
    step.add(9, 20, 1, true);
    backend.forward(step, logits);
    Batch next;
    next.add(7, 21, 1, true);
    next.add(7, 21, 0, true);
    std::vector<float> more;
    backend.forward(next, more);
    logits.insert(logits.end(), more.begin(), more.end());
    return logits;
  };
  const std::vector<float> want = run(*reference_of(m));
  const std::vector<float> got = run(*sharded(m, 2));
  EXPECT_LE(testing::relative_max_error(got, want), kRoundingTolerance);
  // The two sequences differ after the fork, so a missed copy would show.
  const auto vocab = static_cast<size_t>(m.config.vocab_size);
  EXPECT_NE(std::vector<float>(want.begin(), want.begin() + static_cast<long>(vocab)),
            std::vector<float>(want.begin() + static_cast<long>(vocab), want.begin() + static_cast<long>(2 * vocab)));
}

TEST(ShardedGolden, SampledRowsUseTheGatheredLogits) {
  // Non-greedy rows are sampled on the host from the gathered logits: with a seed they pick the
  // reference backend's tokens.
  const GoldenModel& m = golden("qwen2", "f32");
  const auto run = [&](testing::TestBackend& backend) {
    Batch batch;
    for (size_t i = 0; i < m.prompt.size(); ++i) batch.add(m.prompt[i], static_cast<int32_t>(i), 0, true);
    std::vector<RowSampling> rows(batch.output_count());
    for (size_t i = 0; i < rows.size(); ++i) {
      rows[i].params.temperature = 1.5f;
      rows[i].params.top_k = 0;
      rows[i].params.seed = 11;
      rows[i].position = static_cast<int64_t>(i) + 1;
      rows[i].top_logprobs = i % 2 == 0 ? 2 : -1;
    }
    std::vector<SampledToken> out;
    backend.sample(batch, rows, out);
    return out;
  };
  const std::vector<SampledToken> want = run(*reference_of(m));
  const std::vector<SampledToken> got = run(*sharded(m, 2));
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].token, want[i].token) << "row " << i;
    EXPECT_EQ(got[i].error, "");
    EXPECT_NEAR(got[i].logprob, want[i].logprob, 1e-4) << "row " << i;
    EXPECT_EQ(got[i].top.size(), want[i].top.size());
  }
}

// ---- the cross-rank arg max --------------------------------------------------------------------

TEST(CrossRankArgmax, EqualsGreedyOverTheGatheredLogitsTiesIncluded) {
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> level(0, 6);  // few distinct values: many ties, across ranks too
  for (int trial = 0; trial < 500; ++trial) {
    const int ranks = 1 + trial % 5;
    std::vector<float> logits(static_cast<size_t>(7 + trial % 13));
    for (float& x : logits) x = static_cast<float>(level(rng));
    if (trial % 7 == 0) logits.back() = INFINITY;
    std::vector<RankArgmax> candidates;
    const size_t per = (logits.size() + static_cast<size_t>(ranks) - 1) / static_cast<size_t>(ranks);
    for (size_t begin = 0; begin < logits.size(); begin += per) {
      const size_t n = std::min(per, logits.size() - begin);
      candidates.push_back(rank_argmax(std::span<const float>(logits).subspan(begin, n), static_cast<int64_t>(begin)));
    }
    ASSERT_EQ(reduce_argmax(candidates), greedy_token(logits)) << "trial " << trial;
  }
}

TEST(CrossRankArgmax, NaNAndAllMinusInfinityAreErrors) {
  const std::vector<float> shard = {1.0f, NAN, 2.0f};
  try {
    rank_argmax(shard, 100);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "Sampler: logit of token 101 is NaN");
  }
  const std::vector<float> empty_rank = {-INFINITY, -INFINITY};
  const std::vector<RankArgmax> candidates = {rank_argmax(empty_rank, 0), rank_argmax(empty_rank, 2), RankArgmax{}};
  try {
    reduce_argmax(candidates);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "Sampler: every logit is -inf, nothing can be sampled");
  }
}

}  // namespace
}  // namespace realizar::parallel
