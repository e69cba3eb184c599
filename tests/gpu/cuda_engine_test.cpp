// The serving engine on the CUDA backend: requests batched together give the tokens they give
// alone, greedy and seeded sampling (on the device), on the golden Qwen2 checkpoint in float16.
// The CUDA kernels depend on the batch shape (int8 matvec up to 8 tokens, float16 tensor-core
// products above), which moves logits by rounding only; these models' logits are peaked, so the
// first 16 tokens must agree. Skips without a GPU.
#include <gtest/gtest.h>

#include <chrono>

#include "realizar/engine.h"
#include "test_support.h"

#ifdef REALIZAR_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

namespace realizar {
namespace {

using namespace std::chrono_literals;

#ifndef REALIZAR_HAVE_CUDA
TEST(CudaEngine, SkippedWithoutCuda) { GTEST_SKIP() << "built without the CUDA backend"; }
#else

std::vector<int32_t> read_tokens(RequestStream& stream) {
  std::vector<int32_t> tokens;
  while (std::optional<RequestEvent> e = stream.next(60s)) {
    for (const GeneratedToken& t : e->tokens) tokens.push_back(t.id);
    if (e->finish != FinishReason::None) {
      EXPECT_NE(e->finish, FinishReason::Error) << e->error;
      return tokens;
    }
  }
  ADD_FAILURE() << "no event within 60 s";
  return tokens;
}

std::vector<Request> requests(int64_t vocab) {
  std::vector<Request> out;
  for (int i = 0; i < 6; ++i) {
    Request r;
    for (int p = 0; p < 5 + 7 * i; ++p) r.prompt.push_back(static_cast<int32_t>((p * 131 + i * 17 + 3) % vocab));
    r.options.max_tokens = 16;
    r.options.ignore_eos = true;
    if (i % 2 == 0) {
      r.options.sampling.temperature = 0;
    } else {
      r.options.sampling.temperature = 0.7f;
      r.options.sampling.top_k = 20;
      r.options.sampling.seed = 500 + i;
    }
    out.push_back(r);
  }
  return out;
}

TEST(CudaEngine, BatchedRequestsGiveTheTokensTheyGiveAlone) {
  if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device";
  testing::TempDir dir;
  const auto model = testing::convert_golden_checkpoint(dir, "qwen2", "f16");
  EngineOptions options;
  options.device = Device::Cuda;
  options.context_length = 128;
  std::vector<std::vector<int32_t>> alone;
  {
    Engine engine(model, options);
    for (const Request& r : requests(engine.model().config.vocab_size)) {
      RequestStream s = engine.submit(r);
      alone.push_back(read_tokens(s));
    }
  }
  options.max_sequences = 6;
  options.max_batch_tokens = 24;  // prompts in chunks beside the decodes
  Engine engine(model, options);
  std::vector<RequestStream> streams;
  for (const Request& r : requests(engine.model().config.vocab_size)) streams.push_back(engine.submit(r));
  for (size_t i = 0; i < streams.size(); ++i) EXPECT_EQ(read_tokens(streams[i]), alone[i]) << "request " << i;
  EXPECT_EQ(engine.metrics().requests_finished.at("length"), 6);
}

#endif  // REALIZAR_HAVE_CUDA

}  // namespace
}  // namespace realizar
