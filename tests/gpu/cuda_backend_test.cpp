// The whole CUDA backend against the reference backend (the definition of correct) on the golden
// Qwen2, LLaMA and phi-2 checkpoints converted to GGUF, on mixed multi-sequence batches, and on a
// real-shape model named by REALIZAR_TEST_MODEL (e.g. `apr synth qwen2.5-0.5b --type q4_k_m`).
// Skips without a GPU.
//
// Tolerance: the CUDA backend keeps keys and values in float16 (relative rounding 2^-11) and, for
// batches over 8 tokens (over 2 with its float16 weight copies), multiplies float16 copies of
// weights and activations with float32 accumulation; the reference keeps float32 throughout with float64 sums. Those roundings move
// the logits of these models by a few 1e-4 of their largest magnitude (measured up to 5e-3 on
// the 70-token batch); the bound is 1e-2 to leave room for their growth through the layers.
// Batches of up to 8 tokens with quantized weights quantize the activations to int8 blocks
// (relative rounding up to 1/254 of each block's largest value, as llama.cpp's q8_1), which
// moves these random-weight models' logits by up to ~1.3e-2: the bound is 3e-2 there. Greedy decoding (teacher-forced by the reference) must pick
// the reference's best token, or one whose reference logit is within that bound of it (a near
// tie that the roundings may flip).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>

#include "backend/reference/reference_backend.h"
#include "realizar/backend.h"
#include "realizar/error.h"
#include "realizar/gguf.h"
#include "realizar/model.h"
#include "realizar/sampling.h"
#include "test_support.h"

#ifdef REALIZAR_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/graph_cache.h"
#endif

namespace realizar {
namespace {

using testing::TempDir;

#ifndef REALIZAR_HAVE_CUDA
TEST(CudaBackend, SkippedWithoutCuda) { GTEST_SKIP() << "built without the CUDA backend"; }
#else

constexpr double kLogitTolerance = 1e-2;
constexpr double kInt8LogitTolerance = 3e-2;

// `count` greedy steps after `prompt`, both backends fed the reference's choices: at every step
// the CUDA backend's best token must have a reference logit within `tolerance` (relative to the
// largest magnitude) of the reference's best (tolerance 0: the same token, barring exact ties).
void expect_same_greedy_choices(testing::TestBackend& cuda, testing::TestBackend& reference,
                                const std::vector<int32_t>& prompt, size_t count, double tolerance) {
  Batch batch;
  for (size_t i = 0; i < prompt.size(); ++i) {
    batch.add(prompt[i], static_cast<int32_t>(i), 0, i + 1 == prompt.size());
  }
  std::vector<float> a, b;
  const int64_t vocab = reference.backend().config().vocab_size;
  for (size_t step = 0; step < count; ++step) {
    cuda.forward(batch, a);
    reference.forward(batch, b);
    const int32_t best = testing::argmax(b.data(), vocab), chosen = testing::argmax(a.data(), vocab);
    double largest = 0.0;
    for (float v : b) largest = std::max(largest, std::abs(static_cast<double>(v)));
    EXPECT_GE(b[chosen], b[best] - tolerance * largest)
        << "step " << step << ": CUDA chose " << chosen << ", the reference " << best;
    batch.clear();
    batch.add(best, static_cast<int32_t>(prompt.size() + step), 0, true);
  }
}

struct LoadedModel {
  gguf::File file;
  ModelConfig config;
  ModelWeights weights;
  explicit LoadedModel(const std::filesystem::path& path)
      : file(gguf::File::open(path)),
        config(ModelConfig::from_gguf(file)),
        weights(ModelWeights::from_gguf(file, config)) {}
};

// Runs the same batches through both backends and compares every logits row.
void expect_same_logits(testing::TestBackend& cuda, testing::TestBackend& reference, const std::vector<Batch>& batches,
                        double tolerance = kLogitTolerance) {
  std::vector<float> a, b;
  for (size_t i = 0; i < batches.size(); ++i) {
    cuda.forward(batches[i], a);
    reference.forward(batches[i], b);
    const double error = testing::relative_max_error(a, b);
    std::cout << "  batch " << i << " (" << batches[i].size() << " tokens): max relative logit error "
              << error << "\n";
    // Batches of up to 8 tokens multiply int8 activations; larger ones go through float16.
    EXPECT_LE(error, batches[i].size() > 8 ? kLogitTolerance : tolerance) << "batch " << i;
  }
}

std::vector<int32_t> some_tokens(int64_t vocab, size_t n, uint32_t seed) {
  std::vector<int32_t> t(n);
  for (size_t i = 0; i < n; ++i) t[i] = static_cast<int32_t>((seed * 2654435761u + i * 40503u) % vocab);
  return t;
}

// Parameters: golden checkpoint, weight type, and whether the backend multiplies with float16
// weight copies (from 2 tokens on) or only with its kernels on the quantized weights.
class CudaBackendGolden : public ::testing::TestWithParam<std::tuple<std::string, std::string, bool>> {};

TEST_P(CudaBackendGolden, MatchesTheReferenceBackend) {
  if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device";
  const auto& [name, type, half_copies] = GetParam();
  TempDir dir;
  const LoadedModel m(testing::convert_golden_checkpoint(dir, name, type));
  BackendOptions options = testing::cache_options(256);
  options.half_weight_copies = half_copies ? HalfWeightCopies::Always : HalfWeightCopies::Off;
  auto cuda = testing::driven(make_cuda_backend(m.config, m.weights, options));
  auto reference = testing::driven(make_reference_backend(m.config, m.weights, testing::cache_options(256)));

  // With every row's logits: a 70-token prompt (cuBLAS on the float16 copies, or on float16
  // passes dequantized per step), 10 more tokens (the copies, or the float16 tensor-core path on
  // the quantized weights), 3 decode steps (the int8 matvec path) and a 4-token chunk (the copies,
  // or the int8 matvec path).
  const std::vector<int32_t> prompt = some_tokens(m.config.vocab_size, 87, 1);
  std::vector<Batch> batches(6);
  for (size_t i = 0; i < 80; ++i) batches[i < 70 ? 0 : 1].add(prompt[i], static_cast<int32_t>(i), 3, true);
  for (int s = 2; s < 5; ++s) batches[s].add(prompt[s], 78 + s, 3, true);
  for (int i = 83; i < 87; ++i) batches[5].add(prompt[i], i, 3, true);
  const double tolerance = type == "f32" || type == "f16" ? kLogitTolerance : kInt8LogitTolerance;
  expect_same_logits(*cuda, *reference, batches, tolerance);

  auto cuda_fresh = testing::driven(make_cuda_backend(m.config, m.weights, options));
  auto reference_fresh = testing::driven(make_reference_backend(m.config, m.weights, testing::cache_options(256)));
  const std::vector<int32_t> short_prompt(prompt.begin(), prompt.begin() + 5);
  expect_same_greedy_choices(*cuda_fresh, *reference_fresh, short_prompt, 16,
                             type == "f32" || type == "f16" ? 0.0 : kInt8LogitTolerance);
}

INSTANTIATE_TEST_SUITE_P(
    AllArchitectures, CudaBackendGolden,
    ::testing::Combine(::testing::Values("qwen2", "llama", "phi2"),
                       ::testing::Values("f32", "f16", "q8_0", "q4_k_m"), ::testing::Bool()),
    [](const auto& info) {
      return std::get<0>(info.param) + "_" + std::get<1>(info.param) +
             (std::get<2>(info.param) ? "_half_copies" : "_no_copies");
    });

// Several sequences of different lengths in one batch, interleaved, with some logits unwanted;
// a released sequence's blocks are reused by a new one.
TEST(CudaBackend, MixedMultiSequenceBatchesMatchTheReference) {
  if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device";
  TempDir dir;
  const LoadedModel m(testing::convert_golden_checkpoint(dir, "qwen2", "f16"));
  auto cuda = testing::driven(make_cuda_backend(m.config, m.weights, testing::cache_options(512)));
  auto reference = testing::driven(make_reference_backend(m.config, m.weights, testing::cache_options(512)));
  const std::vector<int32_t> t = some_tokens(m.config.vocab_size, 64, 7);

  Batch prefill;  // sequence 0: 37 tokens, sequence 5: 3 tokens, interleaved
  for (int i = 0; i < 37; ++i) {
    prefill.add(t[i], i, 0, i % 9 == 0);
    if (i < 3) prefill.add(t[40 + i], i, 5, true);
  }
  Batch decode;  // both continue, and sequence 9 starts
  decode.add(t[50], 37, 0, true);
  decode.add(t[51], 0, 9, true);
  decode.add(t[52], 3, 5, false);
  decode.add(t[53], 4, 5, true);
  std::vector<Batch> batches = {prefill, decode};
  expect_same_logits(*cuda, *reference, batches);
  EXPECT_EQ(cuda->length(0), 38);
  EXPECT_EQ(cuda->length(5), 5);

  cuda->release(0);
  reference->release(0);
  Batch reuse;  // sequence 11 takes sequence 0's blocks
  for (int i = 0; i < 20; ++i) reuse.add(t[i + 1], i, 11, i == 19);
  reuse.add(t[60], 5, 5, true);
  std::vector<Batch> more = {reuse};
  expect_same_logits(*cuda, *reference, more);
}

// A 1,200-token prompt runs as steps of 512, 512 and 176 tokens whose chunks continue the keys
// the earlier steps cached (flash-attention tiles at first positions 0, 512 and 1,024), then
// decode steps attend over all of it.
TEST(CudaBackend, LongMultiStepPromptMatchesTheReference) {
  if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device";
  TempDir dir;
  const LoadedModel m(testing::convert_golden_checkpoint(dir, "qwen2", "f16"));
  auto cuda = testing::driven(make_cuda_backend(m.config, m.weights, testing::cache_options(1280)));
  auto reference = testing::driven(make_reference_backend(m.config, m.weights, testing::cache_options(1280)));
  const std::vector<int32_t> t = some_tokens(m.config.vocab_size, 1203, 5);
  std::vector<Batch> batches(3);
  for (int i = 0; i < 1200; ++i) batches[0].add(t[i], i, 0, i % 97 == 0 || i >= 1195);
  batches[1].add(t[1200], 1200, 0, true);
  batches[2].add(t[1201], 1201, 0, true);
  expect_same_logits(*cuda, *reference, batches);
}

// A chunk continuing a prefix it shares with another sequence (fork, as the prefix cache shares
// blocks: the shared partial block is copied before it is written), in one step with a decode row
// of the sequence it shares with and a new prompt.
TEST(CudaBackend, ChunkContinuingASharedPrefixMatchesTheReference) {
  if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device";
  TempDir dir;
  const LoadedModel m(testing::convert_golden_checkpoint(dir, "llama", "q8_0"));
  auto cuda = testing::driven(make_cuda_backend(m.config, m.weights, testing::cache_options(1024)));
  auto reference = testing::driven(make_reference_backend(m.config, m.weights, testing::cache_options(1024)));
  const std::vector<int32_t> t = some_tokens(m.config.vocab_size, 600, 8);
  std::vector<Batch> first(1);
  for (int i = 0; i < 300; ++i) first[0].add(t[i], i, 0, i == 299);
  expect_same_logits(*cuda, *reference, first);
  cuda->runner().kv().fork(0, 2);
  reference->runner().kv().fork(0, 2);
  std::vector<Batch> second(1);
  second[0].add(t[300], 300, 0, true);                                   // decode row of sequence 0
  for (int i = 0; i < 100; ++i) second[0].add(t[310 + i], 300 + i, 2, i % 33 == 0 || i == 99);  // continues the shared 300
  for (int i = 0; i < 17; ++i) second[0].add(t[450 + i], i, 1, i == 16);  // a new prompt
  expect_same_logits(*cuda, *reference, second);
  EXPECT_EQ(cuda->length(2), 400);
  EXPECT_EQ(cuda->length(0), 301);
}

// Steps of at most 64 tokens are captured as graphs, prompt chunks of 16 tokens and more included
// (the tiles and their splits are part of the graph's key): a 40-token prompt first (run alone,
// this is the process's first flash-attention launch, inside a capture), then chunks of 30 and 16
// continuing it beside decode rows, and the same shapes again with other tokens (graph replays).
TEST(CudaBackend, GraphedStepsWithPromptChunksMatchTheReference) {
  if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device";
  TempDir dir;
  const LoadedModel m(testing::convert_golden_checkpoint(dir, "qwen2", "f16"));
  auto cuda = testing::driven(make_cuda_backend(m.config, m.weights, testing::cache_options(512)));
  auto reference = testing::driven(make_reference_backend(m.config, m.weights, testing::cache_options(512)));
  const std::vector<int32_t> t = some_tokens(m.config.vocab_size, 400, 12);
  for (int pass = 0; pass < 2; ++pass) {
    const int32_t a = 2 * pass, b = 2 * pass + 1;  // sequences of this pass
    const int offset = 150 * pass;
    std::vector<Batch> batches(3);
    for (int i = 0; i < 40; ++i) batches[0].add(t[offset + i], i, a, i == 39);
    batches[1].add(t[offset + 40], 0, b, true);
    for (int i = 0; i < 30; ++i) batches[1].add(t[offset + 41 + i], 40 + i, a, i % 10 == 9);
    for (int i = 0; i < 16; ++i) batches[2].add(t[offset + 71 + i], 70 + i, a, i == 15);
    batches[2].add(t[offset + 90], 1, b, true);
    expect_same_logits(*cuda, *reference, batches);
  }
}

// Greedy rows of sample() (picked on the device) are greedy_token of each wanted row of forward()'s logits: a 70-token prompt
// of two sequences (the ungraphed path, some rows unwanted), a 12-token batch with every row
// wanted (the graphed int8 path) and 1-token decode steps.
TEST(CudaBackend, ForwardGreedyPicksTheArgMaxOfEachWantedRow) {
  if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device";
  TempDir dir;
  const LoadedModel m(testing::convert_golden_checkpoint(dir, "qwen2", "q4_k_m"));
  auto logits_backend = testing::driven(make_cuda_backend(m.config, m.weights, testing::cache_options(512)));
  auto greedy_backend = testing::driven(make_cuda_backend(m.config, m.weights, testing::cache_options(512)));
  const auto vocab = static_cast<size_t>(m.config.vocab_size);
  const std::vector<int32_t> t = some_tokens(m.config.vocab_size, 90, 4);
  std::vector<Batch> batches(5);
  for (int i = 0; i < 70; ++i) batches[0].add(t[i], i / 2, i % 2, i % 5 != 0);
  for (int i = 0; i < 12; ++i) batches[1].add(t[70 + i], 35 + i, 0, true);
  for (int s = 2; s < 5; ++s) {
    batches[s].add(t[80 + s], 45 + s, 0, true);
    batches[s].add(t[85 + s], 33 + s, 1, true);
  }
  std::vector<float> logits;
  std::vector<int32_t> picked;
  for (size_t b = 0; b < batches.size(); ++b) {
    logits_backend->forward(batches[b], logits);
    greedy_backend->greedy(batches[b], picked);
    ASSERT_EQ(picked.size(), batches[b].output_count());
    for (size_t row = 0; row < picked.size(); ++row) {
      EXPECT_EQ(picked[row], greedy_token(std::span<const float>(logits).subspan(row * vocab, vocab)))
          << "batch " << b << " row " << row;
    }
  }
}

// Sampled rows (sample_rows on the device) pick the host Sampler's token from the same logits,
// with the raw logits' log-probabilities; rows the device does not serve (top-k off) fall back to
// the host for the whole step, with the same results.
TEST(CudaBackend, DeviceSamplingPicksTheHostSamplersTokens) {
  if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device";
  TempDir dir;
  const LoadedModel m(testing::convert_golden_checkpoint(dir, "qwen2", "q4_k_m"));
  auto logits_backend = testing::driven(make_cuda_backend(m.config, m.weights, testing::cache_options(512)));
  auto sampling_backend = testing::driven(make_cuda_backend(m.config, m.weights, testing::cache_options(512)));
  const auto vocab = static_cast<size_t>(m.config.vocab_size);
  const std::vector<int32_t> t = some_tokens(m.config.vocab_size, 90, 9);
  std::vector<Batch> batches(4);
  for (int i = 0; i < 20; ++i) batches[0].add(t[i], i / 2, i % 2, i >= 18);  // two prompts of 10
  for (int s = 1; s < 4; ++s) {
    batches[s].add(t[20 + s], 9 + s, 0, true);
    batches[s].add(t[30 + s], 9 + s, 1, true);
  }
  std::vector<int32_t> history[2] = {{}, {}};
  for (int i = 0; i < 20; ++i) history[i % 2].push_back(t[i]);
  Sampler host(static_cast<int>(vocab));
  int compared = 0;
  for (int pass = 0; pass < 2; ++pass) {  // second pass: top-k off, sampled on the host
    for (size_t b = 0; b < batches.size(); ++b) {
      std::vector<float> logits;
      logits_backend->forward(batches[b], logits);
      std::vector<RowSampling> rows(2);
      for (int r = 0; r < 2; ++r) {
        rows[r].params.temperature = 0.9f;
        rows[r].params.top_k = pass == 0 ? 40 : 0;
        rows[r].params.repeat_penalty = 1.3f;
        rows[r].params.seed = 1000 + r;
        rows[r].history = history[r];
        rows[r].position = static_cast<int64_t>(history[r].size());
        rows[r].top_logprobs = r == 0 ? 3 : -1;
      }
      std::vector<SampledToken> got;
      sampling_backend->sample(batches[b], rows, got);
      ASSERT_EQ(got.size(), 2u);
      for (int r = 0; r < 2; ++r) {
        const std::span<const float> row(logits.data() + r * vocab, vocab);
        ASSERT_TRUE(got[r].error.empty()) << got[r].error;
        EXPECT_EQ(got[r].token, host.sample(row, rows[r].params, rows[r].history, rows[r].position))
            << "pass " << pass << " batch " << b << " row " << r;
        if (r == 0) {
          EXPECT_NEAR(got[r].logprob, token_logprob(row, got[r].token), 1e-4);
          ASSERT_EQ(got[r].top.size(), 3u);
          std::vector<TokenLogprob> want;
          top_logprobs(row, 3, want);
          EXPECT_EQ(got[r].top[0].token, want[0].token);
        }
        ++compared;
      }
      for (int r = 0; r < 2; ++r) history[r].push_back(batches[(b + 1) % batches.size()].tokens[r]);
    }
    // Start the sequences over for the second pass.
    for (int r = 0; r < 2; ++r) {
      logits_backend->release(r);
      sampling_backend->release(r);
      history[r].assign(history[r].begin(), history[r].begin() + 10);
    }
  }
  EXPECT_EQ(compared, 16);
}

TEST(CudaBackend, RejectsBatchesThatDoNotContinueTheCache) {
  if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device";
  TempDir dir;
  const LoadedModel m(testing::convert_golden_checkpoint(dir, "llama", "f16"));
  auto cuda = testing::driven(make_cuda_backend(m.config, m.weights, testing::cache_options(64)));
  Batch batch;
  batch.add(1, 1, 0, true);
  std::vector<float> logits;
  try {
    cuda->forward(batch, logits);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does not continue"), std::string::npos) << e.what();
  }
}

// A model of real shape (REALIZAR_TEST_MODEL), e.g. a synthetic Qwen2.5-0.5B Q4_K_M: a 12-token
// prompt then 2 decode steps against the reference.
TEST(CudaBackend, RealShapeModelMatchesTheReference) {
  if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device";
  const char* path = std::getenv("REALIZAR_TEST_MODEL");
  if (path == nullptr) GTEST_SKIP() << "REALIZAR_TEST_MODEL not set";
  const LoadedModel m(path);
  auto cuda = testing::driven(make_cuda_backend(m.config, m.weights, testing::cache_options(64)));
  auto reference = testing::driven(make_reference_backend(m.config, m.weights, testing::cache_options(64)));
  const std::vector<int32_t> t = some_tokens(m.config.vocab_size, 16, 3);
  std::vector<Batch> batches(3);
  for (int i = 0; i < 12; ++i) batches[0].add(t[i], i, 0, i == 11);
  batches[1].add(t[12], 12, 0, true);
  batches[2].add(t[13], 13, 0, true);
  expect_same_logits(*cuda, *reference, batches, kInt8LogitTolerance);
}

// The graph cache holds at most its capacity, dropping the least recently used graph.
TEST(CudaGraphCache, DropsTheLeastRecentlyUsedGraphWhenFull) {
  if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device";
  const auto empty_graph = [] {
    cudaGraph_t graph = nullptr;
    EXPECT_EQ(cudaGraphCreate(&graph, 0), cudaSuccess);
    cudaGraphExec_t exec = nullptr;
    EXPECT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
    cudaGraphDestroy(graph);
    return exec;
  };
  cuda::GraphCache cache(2);
  const cuda::GraphKey a{1, 1, 1, 0}, b{2, 1, 2, 0}, c{3, 1, 3, 1};
  const cudaGraphExec_t ga = empty_graph(), gb = empty_graph();
  cache.insert(a, ga);
  cache.insert(b, gb);
  EXPECT_EQ(cache.find(a), ga);  // a is now the most recently used
  cache.insert(c, empty_graph());
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_EQ(cache.find(b), nullptr);
  EXPECT_EQ(cache.find(a), ga);
  EXPECT_NE(cache.find(c), nullptr);
}

#endif  // REALIZAR_HAVE_CUDA

}  // namespace
}  // namespace realizar
