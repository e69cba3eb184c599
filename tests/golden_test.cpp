// End-to-end fidelity against Hugging Face transformers (DESIGN.md §3.1): small random-weight
// Qwen2, LLaMA and phi-2 checkpoints (tools/reference/golden_models.py, weights from a hash so CI
// rebuilds them exactly) are converted with `apr convert`, run by the reference backend, and
// compared with the float64 logits and 32 greedy tokens transformers produced on the GPU machine
// (tests/data/golden/).
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "backend/reference/reference_backend.h"
#include "realizar/backend.h"
#include "realizar/gguf.h"
#include "realizar/model.h"
#include "test_support.h"

namespace realizar {
namespace {

using testing::TempDir;

struct Golden {
  std::vector<int32_t> prompt;
  std::vector<int32_t> greedy;
  std::vector<float> logits;  // [prompt x vocab]
  int64_t vocab = 0;
};

Golden load_golden(const std::string& name) {
  const auto dir = testing::source_dir() / "tests/data/golden";
  const auto meta = nlohmann::json::parse(testing::read_file(dir / (name + ".json")));
  Golden g;
  g.prompt = meta.at("prompt").get<std::vector<int32_t>>();
  g.greedy = meta.at("greedy").get<std::vector<int32_t>>();
  g.vocab = meta.at("vocab").get<int64_t>();
  const std::string bytes = testing::read_file(dir / (name + ".logits.f32"));
  g.logits.resize(bytes.size() / sizeof(float));
  std::memcpy(g.logits.data(), bytes.data(), bytes.size());
  EXPECT_EQ(g.logits.size(), g.prompt.size() * static_cast<size_t>(g.vocab));
  return g;
}

// Greedy continuation: one prefill batch, then one decode step per token through the KV cache.
std::vector<int32_t> greedy_tokens(testing::TestBackend& backend, const std::vector<int32_t>& prompt,
                                   size_t count) {
  Batch batch;
  for (size_t i = 0; i < prompt.size(); ++i) {
    batch.add(prompt[i], static_cast<int32_t>(i), 0, i + 1 == prompt.size());
  }
  std::vector<float> logits;
  std::vector<int32_t> out;
  const int64_t vocab = backend.backend().config().vocab_size;
  while (true) {
    backend.forward(batch, logits);
    out.push_back(testing::argmax(logits.data(), vocab));
    if (out.size() == count) return out;
    batch.clear();
    batch.add(out.back(), static_cast<int32_t>(prompt.size() + out.size() - 1), 0, true);
  }
}

class GoldenTest : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {};

TEST_P(GoldenTest, ReferenceBackendMatchesTransformers) {
  const auto& [name, type] = GetParam();
  TempDir dir;
  const Golden golden = load_golden(name);
  const gguf::File file = gguf::File::open(testing::convert_golden_checkpoint(dir, name, type));
  const ModelConfig config = ModelConfig::from_gguf(file);
  const ModelWeights weights = ModelWeights::from_gguf(file, config);
  ASSERT_EQ(config.vocab_size, golden.vocab);

  auto backend = testing::driven(make_reference_backend(config, weights, testing::cache_options(256)));
  Batch batch;
  for (size_t i = 0; i < golden.prompt.size(); ++i) {
    batch.add(golden.prompt[i], static_cast<int32_t>(i), 7, true);
  }
  std::vector<float> logits;
  backend->forward(batch, logits);
  ASSERT_EQ(logits.size(), golden.logits.size());
  EXPECT_LE(testing::relative_max_error(logits, golden.logits), 1e-3);

  auto fresh = testing::driven(make_reference_backend(config, weights, testing::cache_options(256)));
  EXPECT_EQ(greedy_tokens(*fresh, golden.prompt, golden.greedy.size()), golden.greedy);
}

INSTANTIATE_TEST_SUITE_P(
    AllArchitectures, GoldenTest,
    ::testing::Combine(::testing::Values("qwen2", "llama", "phi2"),
                       ::testing::Values("f32", "f16", "bf16")),
    [](const auto& info) { return std::get<0>(info.param) + "_" + std::get<1>(info.param); });

}  // namespace
}  // namespace realizar
