// apr synth: presets, tokenizers, determinism.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "realizar/convert.h"
#include "realizar/gguf.h"
#include "realizar/model.h"
#include "realizar/tokenizer_gguf.h"
#include "test_support.h"

namespace realizar {
namespace {

using testing::run_apr;
using testing::TempDir;

gguf::File synth_tiny(const TempDir& dir, const std::vector<std::string>& extra,
                      const std::string& name = "tiny.gguf") {
  std::vector<std::string> args = {"synth", "tiny", "-o", (dir / name).string()};
  args.insert(args.end(), extra.begin(), extra.end());
  const auto result = run_apr(args);
  EXPECT_EQ(result.exit_code, 0) << result.err;
  return gguf::File::open(dir / name);
}

TEST(Synth, TinyWithoutTokenizerHasByteVocabularyAndLoads) {
  TempDir dir;
  const gguf::File file = synth_tiny(dir, {"--type", "f32"});
  const TokenizerSpec spec = tokenizer_spec_from_gguf(file);
  EXPECT_EQ(spec.model, "gpt2");
  ASSERT_EQ(spec.tokens.size(), 257u);
  EXPECT_EQ(spec.tokens['a'], "a");
  EXPECT_EQ(spec.tokens[' '], "\xC4\xA0");  // GPT-2 shows the space byte as U+0120
  EXPECT_EQ(spec.eos_token_id, 256);
  const ModelConfig config = ModelConfig::from_gguf(file);
  EXPECT_EQ(config.vocab_size, 257);
  EXPECT_EQ(config.embedding_length, 64);
  const ModelWeights weights = ModelWeights::from_gguf(file, config);
  // ~N(0, 0.02^2): the sample standard deviation of a whole matrix, and norms exactly 1.
  const auto* q = reinterpret_cast<const float*>(weights.layers[0].attn_q.data);
  double sum2 = 0;
  for (int i = 0; i < 64 * 64; ++i) sum2 += double(q[i]) * q[i];
  EXPECT_NEAR(std::sqrt(sum2 / (64 * 64)), 0.02, 0.002);
  EXPECT_EQ(reinterpret_cast<const float*>(weights.layers[1].ffn_norm.data)[5], 1.0f);
}

TEST(Synth, TinyTakesEachTokenizer) {
  for (const char* family : {"qwen2", "llama2"}) {
    TempDir dir;
    const auto tok = testing::source_dir() / "tests/data/tokenizers" / family / "tokenizer.json";
    const gguf::File file = synth_tiny(dir, {"--tokenizer", tok.string()});
    const TokenizerSpec spec = tokenizer_spec_from_gguf(file);
    EXPECT_EQ(spec.model, std::string(family) == "qwen2" ? "gpt2" : "llama");
    EXPECT_EQ(static_cast<int64_t>(spec.tokens.size()),
              ModelConfig::from_gguf(file).vocab_size);
    EXPECT_EQ(spec.chat_template.has_value(), std::string(family) == "qwen2") << family;
  }
}

TEST(Synth, OutputDependsOnlyOnTheSeed) {
  TempDir dir;
  synth_tiny(dir, {"--seed", "7", "--threads", "1"}, "a.gguf");
  synth_tiny(dir, {"--seed", "7", "--threads", "3"}, "b.gguf");
  synth_tiny(dir, {"--seed", "8"}, "c.gguf");
  EXPECT_EQ(testing::read_file(dir / "a.gguf"), testing::read_file(dir / "b.gguf"));
  EXPECT_NE(testing::read_file(dir / "a.gguf"), testing::read_file(dir / "c.gguf"));
}

TEST(Synth, PresetShapesMatchTheReleasedConfigs) {
  struct Expected { const char* name; int64_t hidden, layers, heads, kv, ffn, vocab; bool tied; };
  const Expected expected[] = {
      {"qwen2.5-0.5b", 896, 24, 14, 2, 4864, 151936, true},
      {"qwen2.5-1.5b", 1536, 28, 12, 2, 8960, 151936, true},
      {"qwen2.5-7b", 3584, 28, 28, 4, 18944, 152064, false},
      {"qwen2.5-32b", 5120, 64, 40, 8, 27648, 152064, false},
      {"tinyllama-1.1b", 2048, 22, 32, 4, 5632, 32000, false}};
  for (const Expected& e : expected) {
    const SynthPreset& p = synth_preset(e.name);
    const auto plans = synth_tensor_layout(p, p.vocab, QuantScheme::F16);
    std::map<std::string, std::vector<uint64_t>> dims;
    for (const TensorPlan& plan : plans) dims[plan.name] = plan.dims;
    const uint64_t head_dim = e.hidden / e.heads;
    EXPECT_EQ(dims["token_embd.weight"], (std::vector<uint64_t>{uint64_t(e.hidden), uint64_t(e.vocab)})) << e.name;
    const std::string last = "blk." + std::to_string(e.layers - 1) + ".";
    EXPECT_EQ(dims[last + "attn_k.weight"], (std::vector<uint64_t>{uint64_t(e.hidden), e.kv * head_dim})) << e.name;
    EXPECT_EQ(dims[last + "ffn_down.weight"], (std::vector<uint64_t>{uint64_t(e.ffn), uint64_t(e.hidden)})) << e.name;
    EXPECT_EQ(dims.count("blk." + std::to_string(e.layers) + ".attn_q.weight"), 0u) << e.name;
    EXPECT_EQ(dims.count("output.weight"), e.tied ? 0u : 1u) << e.name;
    EXPECT_EQ(dims.count("blk.0.attn_q.bias"), std::string(e.name).starts_with("qwen") ? 1u : 0u);
  }
}

TEST(Synth, UnknownPresetIsAnError) {
  TempDir dir;
  const auto result = run_apr({"synth", "gpt5", "-o", (dir / "x.gguf").string()});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.err.find("unknown synth preset 'gpt5'"), std::string::npos) << result.err;
}

}  // namespace
}  // namespace realizar
