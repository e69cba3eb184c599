// The serving engine: requests joining and leaving a running batch, preemption, prefix caching,
// queueing when the KV pool is full, cancellation, per-request failures, admission errors.
// The reference backend computes every token independently of what shares its batch, so there
// the engine must reproduce a request run alone exactly.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <thread>

#include "engine/scheduler.h"
#include "backend/reference/reference_backend.h"
#include "realizar/convert.h"
#include "realizar/engine.h"
#include "realizar/prompt.h"
#include "realizar/error.h"
#include "test_support.h"
#include "util/thread_pool.h"

namespace realizar {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

// The `tiny` synth preset (LLaMA layout, 2 layers, hidden 64, byte-level vocabulary of 257).
const std::filesystem::path& tiny_model() {
  static testing::TempDir dir;
  static const std::filesystem::path path = [] {
    const std::filesystem::path p = dir / "tiny.gguf";
    ThreadPool pool(2);
    SynthOptions options;
    options.scheme = QuantScheme::F32;
    options.seed = 11;
    synth_model(synth_preset("tiny"), p, options, pool);
    return p;
  }();
  return path;
}

EngineOptions reference_options(int parallel, int64_t context = 128, int64_t kv_tokens = 0) {
  EngineOptions o;
  o.device = Device::Reference;
  o.context_length = context;
  o.max_sequences = parallel;
  o.kv_cache_tokens = kv_tokens;
  return o;
}

std::vector<int32_t> prompt_of(int length, int salt) {
  std::vector<int32_t> p;
  for (int i = 0; i < length; ++i) p.push_back((i * 37 + salt * 101 + 5) % 256);
  return p;
}

GenerationOptions greedy(int max_tokens) {
  GenerationOptions o;
  o.max_tokens = max_tokens;
  o.sampling.temperature = 0;
  o.ignore_eos = true;
  return o;
}

struct Result {
  std::vector<int32_t> tokens;
  std::string text;
  FinishReason finish = FinishReason::None;
  std::string error;
  RequestStats stats;
};

// Reads a request to its end (bounded: every event must come within 60 s).
Result read_all(RequestStream& stream) {
  Result r;
  while (true) {
    std::optional<RequestEvent> event = stream.next(60s);
    if (!event) {
      ADD_FAILURE() << "no event within 60 s";
      return r;
    }
    for (const GeneratedToken& t : event->tokens) r.tokens.push_back(t.id);
    r.text += event->text;
    if (event->finish != FinishReason::None) {
      r.finish = event->finish;
      r.error = event->error;
      r.stats = event->stats;
      return r;
    }
  }
}

Result run_alone(const Request& request) {
  Engine engine(tiny_model(), reference_options(1));
  RequestStream stream = engine.submit(request);
  return read_all(stream);
}

// Waits (bounded) until `done` holds for the engine's metrics.
template <class Pred>
EngineMetrics wait_for_metrics(const Engine& engine, Pred done) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  EngineMetrics m = engine.metrics();
  while (!done(m) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(2ms);
    m = engine.metrics();
  }
  return m;
}

TEST(Engine, RequestsJoiningAndLeavingMidStreamGiveTheTokensTheyGiveAlone) {
  const std::vector<Request> requests = {
      {prompt_of(20, 1), greedy(30)}, {prompt_of(3, 2), greedy(12)}, {prompt_of(45, 3), greedy(25)},
      {prompt_of(9, 4), greedy(40)},  {prompt_of(17, 5), greedy(5)},
  };
  std::vector<Result> alone;
  for (const Request& r : requests) alone.push_back(run_alone(r));

  EngineOptions options = reference_options(3);
  options.max_batch_tokens = 16;  // prompts go in chunks beside the running decodes
  Engine engine(tiny_model(), options);
  std::vector<RequestStream> streams;
  streams.push_back(engine.submit(requests[0]));
  streams.push_back(engine.submit(requests[1]));
  // The others join while the first two decode: wait for tokens of the first.
  std::optional<RequestEvent> first = streams[0].next(60s);
  ASSERT_TRUE(first);
  std::vector<int32_t> head;
  for (const GeneratedToken& t : first->tokens) head.push_back(t.id);
  for (size_t i = 2; i < requests.size(); ++i) streams.push_back(engine.submit(requests[i]));
  for (size_t i = 0; i < requests.size(); ++i) {
    Result got = read_all(streams[i]);
    if (i == 0) got.tokens.insert(got.tokens.begin(), head.begin(), head.end());
    EXPECT_EQ(got.tokens, alone[i].tokens) << "request " << i;
    EXPECT_EQ(got.finish, FinishReason::Length);
    EXPECT_EQ(got.stats.generated_tokens, requests[i].options.max_tokens);
  }
  EXPECT_GT(engine.metrics().steps, 0);
}

TEST(Engine, PreemptedRequestsResumeWithTheSameTokens) {
  // Room for 96 tokens: three requests growing to 40-70 tokens cannot all stay.
  const std::vector<Request> requests = {
      {prompt_of(30, 7), greedy(40)}, {prompt_of(25, 8), greedy(40)}, {prompt_of(20, 9), greedy(40)}};
  std::vector<Result> alone;
  for (const Request& r : requests) alone.push_back(run_alone(r));
  EngineOptions options = reference_options(3, 96, 96);
  options.prefix_caching = false;  // recomputation from scratch
  Engine engine(tiny_model(), options);
  std::vector<RequestStream> streams;
  for (const Request& r : requests) streams.push_back(engine.submit(r));
  int64_t preemptions = 0;
  for (size_t i = 0; i < requests.size(); ++i) {
    const Result got = read_all(streams[i]);
    EXPECT_EQ(got.tokens, alone[i].tokens) << "request " << i;
    EXPECT_EQ(got.finish, FinishReason::Length) << got.error;
    preemptions += got.stats.preemptions;
  }
  EXPECT_GT(preemptions, 0);
  EXPECT_EQ(engine.metrics().preemptions, preemptions);
}

TEST(Engine, APrefixCacheHitGivesTheTokensOfAColdRun) {
  const Request request{prompt_of(70, 12), greedy(20)};
  const Result cold = run_alone(request);
  Engine engine(tiny_model(), reference_options(2));
  RequestStream first = engine.submit(request);
  const Result warm_up = read_all(first);
  EXPECT_EQ(warm_up.stats.cached_tokens, 0);
  RequestStream second = engine.submit(request);
  const Result hit = read_all(second);
  EXPECT_EQ(hit.tokens, cold.tokens);
  EXPECT_EQ(hit.stats.cached_tokens, 64);  // 4 full blocks of the 70-token prompt
  // A longer prompt sharing the first 70 tokens attaches them and the generated ones' blocks too.
  Request follow_up = request;
  follow_up.prompt.insert(follow_up.prompt.end(), warm_up.tokens.begin(), warm_up.tokens.end());
  follow_up.prompt.push_back(3);
  RequestStream third = engine.submit(follow_up);
  const Result longer = read_all(third);
  EXPECT_EQ(longer.stats.cached_tokens, 80);  // 91 tokens: 5 of their blocks were filled before
  EXPECT_EQ(longer.tokens, run_alone(follow_up).tokens);
  const EngineMetrics m = engine.metrics();
  EXPECT_EQ(m.prefix_cache_hits, 64 + 80);
  EXPECT_EQ(m.prefix_cache_queries, 70 + 70 + 91);
}

TEST(Engine, AFullKvPoolQueuesRequestsInsteadOfFailingThem) {
  // Eight requests may run at once, but the pool holds only 128 tokens.
  EngineOptions options = reference_options(8, 64, 128);
  Engine engine(tiny_model(), options);
  std::vector<RequestStream> streams;
  std::vector<Request> requests;
  for (int i = 0; i < 8; ++i) {
    requests.push_back({prompt_of(30, 20 + i), greedy(20)});
    streams.push_back(engine.submit(requests.back()));
  }
  for (size_t i = 0; i < streams.size(); ++i) {
    const Result got = read_all(streams[i]);
    EXPECT_EQ(got.finish, FinishReason::Length) << got.error;
    EXPECT_EQ(got.tokens.size(), 20u);
  }
  const EngineMetrics m = wait_for_metrics(engine, [](const EngineMetrics& x) { return x.kv_blocks_used == 0; });
  EXPECT_EQ(m.requests_finished.at("length"), 8);
  EXPECT_EQ(m.kv_blocks_used, 0);
}

TEST(Engine, CancellationEndsTheRequestAndFreesItsBlocks) {
  Engine engine(tiny_model(), reference_options(2, 256));
  RequestStream stream = engine.submit({prompt_of(40, 30), greedy(200)});
  ASSERT_TRUE(stream.next(60s));  // it runs
  EXPECT_GT(engine.metrics().kv_blocks_used, 0);
  engine.cancel(stream.id());
  const Result rest = read_all(stream);
  EXPECT_EQ(rest.finish, FinishReason::Cancelled);
  EXPECT_LT(rest.stats.generated_tokens, 200);
  EXPECT_EQ(wait_for_metrics(engine, [](const EngineMetrics& m) { return m.kv_blocks_used == 0; }).kv_blocks_used, 0);

  {  // a reader that goes away cancels its request too
    RequestStream dropped = engine.submit({prompt_of(40, 31), greedy(200)});
    ASSERT_TRUE(dropped.next(60s));
  }
  const EngineMetrics m = wait_for_metrics(engine, [](const EngineMetrics& x) {
    return x.requests_finished.count("cancelled") && x.requests_finished.at("cancelled") == 2 && x.kv_blocks_used == 0;
  });
  EXPECT_EQ(m.requests_finished.at("cancelled"), 2);
  EXPECT_EQ(m.kv_blocks_used, 0);
}

TEST(Engine, StopStringsAndLimitsEndRequestsWithTheirReasons) {
  Engine engine(tiny_model(), reference_options(2));
  const Request plain{prompt_of(10, 40), greedy(24)};
  RequestStream s1 = engine.submit(plain);
  const Result full = read_all(s1);
  ASSERT_EQ(full.finish, FinishReason::Length);
  ASSERT_GE(full.text.size(), 6u);
  // Stop at a piece of the text the request produces: the text before it, reason "stop".
  Request stopped = plain;
  stopped.options.stop = {full.text.substr(3, 3)};
  RequestStream s2 = engine.submit(stopped);
  const Result cut = read_all(s2);
  EXPECT_EQ(cut.finish, FinishReason::Stop);
  EXPECT_EQ(cut.text, full.text.substr(0, full.text.find(stopped.options.stop[0])));
  // The context ends a request with "length" even below max_tokens.
  Engine short_context(tiny_model(), reference_options(1, 32));
  RequestStream s3 = short_context.submit({prompt_of(20, 41), greedy(100)});
  const Result capped = read_all(s3);
  EXPECT_EQ(capped.finish, FinishReason::Length);
  EXPECT_EQ(capped.stats.generated_tokens, 12);
}

TEST(Engine, AFinishedRequestIsCountedByTheTimeItsLastEventArrives) {
  Engine engine(tiny_model(), reference_options(1));
  for (int i = 1; i <= 5; ++i) {
    RequestStream stream = engine.submit({prompt_of(6, 60 + i), greedy(2)});
    ASSERT_EQ(read_all(stream).finish, FinishReason::Length);
    const EngineMetrics m = engine.metrics();  // no waiting: /metrics right after an answer
    EXPECT_EQ(m.requests_finished.at("length"), i);
    EXPECT_EQ(m.e2e_request_latency.count, static_cast<uint64_t>(i));
  }
}

TEST(Engine, SeededSamplingGivesTheSameTokensWhateverSharesTheBatch) {
  GenerationOptions sampled;
  sampled.max_tokens = 30;
  sampled.ignore_eos = true;
  sampled.sampling.temperature = 1.5f;
  sampled.sampling.top_k = 50;
  sampled.sampling.seed = 77;
  const Request request{prompt_of(12, 50), sampled};
  const Result alone = run_alone(request);
  Engine engine(tiny_model(), reference_options(4));
  std::vector<RequestStream> streams;
  for (int i = 0; i < 3; ++i) {
    GenerationOptions other = sampled;
    other.sampling.seed = 100 + i;
    streams.push_back(engine.submit({prompt_of(8 + i, 60 + i), other}));
  }
  streams.push_back(engine.submit(request));
  std::vector<Result> results;
  for (RequestStream& s : streams) results.push_back(read_all(s));
  EXPECT_EQ(results.back().tokens, alone.tokens);
  EXPECT_NE(results[0].tokens, alone.tokens);
}

TEST(Engine, LogprobsComeWithEachTokenWhenAsked) {
  Engine engine(tiny_model(), reference_options(1));
  GenerationOptions o = greedy(5);
  o.top_logprobs = 3;
  RequestStream stream = engine.submit({prompt_of(10, 70), o});
  std::vector<GeneratedToken> tokens;
  while (std::optional<RequestEvent> e = stream.next(60s)) {
    tokens.insert(tokens.end(), e->tokens.begin(), e->tokens.end());
    if (e->finish != FinishReason::None) break;
  }
  ASSERT_EQ(tokens.size(), 5u);
  for (const GeneratedToken& t : tokens) {
    ASSERT_EQ(t.top.size(), 3u);
    EXPECT_EQ(t.top[0].token, t.id);  // greedy: the most likely token
    EXPECT_FLOAT_EQ(t.top[0].logprob, t.logprob);
    EXPECT_LE(t.logprob, 0.0f);
    EXPECT_GE(t.top[0].logprob, t.top[1].logprob);
  }
}

TEST(Engine, SubmitRejectsBadRequestsWithTheirCodes) {
  EngineOptions options = reference_options(1, 32);
  options.max_waiting = 1;
  Engine engine(tiny_model(), options);
  const auto code_of = [&](Request r) {
    try {
      engine.submit(std::move(r));
    } catch (const RequestError& e) {
      return std::make_pair(e.code(), std::string(e.what()));
    }
    return std::make_pair(RequestError::Code::InvalidRequest, std::string("accepted"));
  };
  EXPECT_THAT(code_of({{}, greedy(4)}).second, HasSubstr("the prompt is empty"));
  EXPECT_THAT(code_of({{1, 999}, greedy(4)}).second, HasSubstr("token id 999 is outside the vocabulary"));
  EXPECT_THAT(code_of({{1, 2}, greedy(0)}).second, HasSubstr("max_tokens must be at least 1"));
  GenerationOptions hot = greedy(4);
  hot.sampling.temperature = -1;
  EXPECT_THAT(code_of({{1, 2}, hot}).second, HasSubstr("temperature must be"));
  GenerationOptions many = greedy(4);
  many.top_logprobs = 21;
  EXPECT_THAT(code_of({{1, 2}, many}).second, HasSubstr("top_logprobs must be at most 20"));
  const auto [code, message] = code_of({prompt_of(32, 1), greedy(4)});
  EXPECT_EQ(code, RequestError::Code::ContextLengthExceeded);
  EXPECT_THAT(message, HasSubstr("the prompt has 32 tokens but the context holds 32"));

  RequestStream running = engine.submit({prompt_of(10, 2), greedy(20)});
  ASSERT_TRUE(running.next(60s));  // running, so the queue is empty again
  RequestStream queued = engine.submit({prompt_of(10, 3), greedy(20)});  // waits (one sequence at a time)
  EXPECT_EQ(code_of({prompt_of(10, 4), greedy(4)}).first, RequestError::Code::QueueFull);
  engine.stop_accepting();
  EXPECT_EQ(code_of({prompt_of(10, 5), greedy(4)}).first, RequestError::Code::ShuttingDown);
  EXPECT_EQ(read_all(running).finish, FinishReason::Length);
  EXPECT_EQ(read_all(queued).finish, FinishReason::Length);
}

TEST(Engine, APoolSmallerThanOneContextIsRefused) {
  EXPECT_THAT([] { Engine(tiny_model(), reference_options(1, 128, 64)); },
              ::testing::ThrowsMessage<Error>(HasSubstr("less than one context of 128")));
}

// A backend that spoils the logits of every row of one sequence with a NaN.
class NanForSequence : public Backend {
 public:
  NanForSequence(std::unique_ptr<Backend> inner, int32_t seq) : inner_(std::move(inner)), seq_(seq) {}
  std::string_view name() const override { return inner_->name(); }
  const ModelConfig& config() const override { return inner_->config(); }
  int64_t cache_slots() const override { return inner_->cache_slots(); }
  int64_t kv_bytes_per_token() const override { return inner_->kv_bytes_per_token(); }
  void copy_blocks(std::span<const BlockCopy> copies) override { inner_->copy_blocks(copies); }
  void forward(const Batch& batch, const KvStep& cache, std::vector<float>& logits) override {
    inner_->forward(batch, cache, logits);
    size_t row = 0;
    for (size_t i = 0; i < batch.size(); ++i) {
      if (!batch.want_logits[i]) continue;
      if (batch.seq_ids[i] == seq_) logits[row * static_cast<size_t>(config().vocab_size) + 7] = NAN;
      ++row;
    }
  }

 private:
  std::unique_ptr<Backend> inner_;
  int32_t seq_;
};

TEST(Scheduler, ANanRowFailsOnlyItsRequest) {
  const std::unique_ptr<Model> model = Model::load(tiny_model());
  auto reference = make_reference_backend(model->config, model->weights, testing::cache_options(512));
  SchedulerLimits limits;
  limits.context_length = 128;
  limits.max_sequences = 3;
  // Sequences are numbered in admission order: the second request gets sequence 1.
  Scheduler scheduler(std::make_unique<NanForSequence>(std::move(reference), 1), KvManager(32), model->tokenizer,
                      limits);
  std::vector<std::shared_ptr<RequestChannel>> channels;
  std::vector<Request> requests = {{prompt_of(10, 80), greedy(8)}, {prompt_of(10, 81), greedy(8)},
                                   {prompt_of(10, 82), greedy(8)}};
  for (size_t i = 0; i < requests.size(); ++i) {
    channels.push_back(std::make_shared<RequestChannel>());
    scheduler.submit(i + 1, requests[i], channels.back());
  }
  for (size_t i = 0; i < requests.size(); ++i) {
    RequestStream stream(i + 1, channels[i]);
    const Result got = read_all(stream);
    if (i == 1) {
      EXPECT_EQ(got.finish, FinishReason::Error);
      EXPECT_THAT(got.error, HasSubstr("NaN"));
    } else {
      EXPECT_EQ(got.finish, FinishReason::Length) << got.error;
      EXPECT_EQ(got.tokens, run_alone(requests[i]).tokens);
    }
  }
  EXPECT_EQ(scheduler.metrics().requests_finished.at("error"), 1);
}

// The CPU backend's kernels are exact per token too (each output is one dot-product kernel call
// over the same inputs), so batching leaves SmolLM2's greedy tokens unchanged.
TEST(Engine, CpuBatchedRequestsMatchTheirSoloRunsOnSmolLm2) {
  const std::optional<std::filesystem::path> smollm2 = testing::real_model("smollm2-135m");
  if (!smollm2) GTEST_SKIP() << "SmolLM2 not downloaded (tools/fetch_models.sh smollm2-135m)";
  EngineOptions options;
  options.device = Device::Cpu;
  options.context_length = 256;
  options.threads = 2;
  const std::vector<std::string> questions = {"What is the capital of France?", "Name three colours.",
                                              "Write a haiku about the sea."};
  std::vector<Request> requests;
  {
    Engine probe(*smollm2, options);
    for (const std::string& q : questions) {
      const std::vector<ChatMessage> messages = {{"user", q}};
      requests.push_back({chat_prompt(probe.tokenizer(), messages).tokens, greedy(16)});
    }
  }
  std::vector<std::vector<int32_t>> alone;
  {
    Engine engine(*smollm2, options);
    for (const Request& r : requests) {
      RequestStream s = engine.submit(r);
      alone.push_back(read_all(s).tokens);
    }
  }
  options.max_sequences = 3;
  Engine engine(*smollm2, options);
  std::vector<RequestStream> streams;
  for (const Request& r : requests) streams.push_back(engine.submit(r));
  for (size_t i = 0; i < streams.size(); ++i) EXPECT_EQ(read_all(streams[i]).tokens, alone[i]) << questions[i];
}

}  // namespace
}  // namespace realizar
