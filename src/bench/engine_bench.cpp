#include "bench/engine_bench.h"

#include <mutex>
#include <random>

#include "bench/report_json.h"
#include "realizar/error.h"
#include "util/progress.h"

namespace realizar::bench {
namespace {

double seconds_since(WorkloadClock::time_point start, WorkloadClock::time_point t) {
  return std::chrono::duration<double>(t - start).count();
}

// Random token ids (as llama-bench feeds), a different prompt per request so that the prefix
// cache does not serve one request from another.
std::vector<int32_t> prompt_ids(int64_t length, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> ids(static_cast<size_t>(length));
  for (int32_t& id : ids) id = static_cast<int32_t>(rng() % static_cast<uint64_t>(vocab));
  return ids;
}

// Submits one request and records when each of its tokens arrived.
RequestRecord run_request(Engine& engine, Request request, double timeout_seconds, WorkloadClock::time_point start) {
  RequestRecord record;
  record.prompt_tokens = static_cast<int64_t>(request.prompt.size());
  record.send_time = seconds_since(start, WorkloadClock::now());
  try {
    RequestStream stream = engine.submit(std::move(request));
    const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(timeout_seconds * 1000));
    while (true) {
      std::optional<RequestEvent> event = stream.next(timeout);
      if (!event) {
        record.error = "no event within the timeout";
        return record;
      }
      const double at = seconds_since(start, event->time);
      for (size_t i = 0; i < event->tokens.size(); ++i) record.token_times.push_back(at);
      if (event->finish == FinishReason::None) continue;
      if (event->finish == FinishReason::Error) record.error = event->error;
      record.output_tokens = event->stats.generated_tokens;
      record.cached_prompt_tokens = event->stats.cached_tokens;
      record.end_time = at;
      if (!record.token_times.empty()) record.first_token_time = record.token_times.front();
      return record;
    }
  } catch (const Error& e) {
    record.error = e.what();
    record.end_time = seconds_since(start, WorkloadClock::now());
    return record;
  }
}

}  // namespace

nlohmann::json run_engine_benchmark(const EngineBenchConfig& c) {
  const ServeOptions& o = c.options;
  if (o.repetitions < 1 || o.warmup_requests < 0) {
    fail("bench engine: want at least 1 repetition and no negative warm-up count");
  }
  Engine engine(c.model, c.engine);
  const int64_t vocab = static_cast<int64_t>(engine.tokenizer().vocab_size());
  const std::vector<PlannedRequest> plan = plan_requests(o.workload);
  for (const PlannedRequest& p : plan) {
    if (p.prompt_tokens + p.output_tokens > engine.context_length()) {
      fail("bench engine: a request of {} prompt and {} output tokens does not fit the context of {} "
           "(raise --ctx)", p.prompt_tokens, p.output_tokens, engine.context_length());
    }
  }
  const auto request_of = [&](int64_t prompt_tokens, int64_t output_tokens, uint64_t seed) {
    Request r;
    r.prompt = prompt_ids(prompt_tokens, vocab, seed);
    r.options.max_tokens = static_cast<int>(output_tokens);
    r.options.ignore_eos = o.ignore_eos;
    r.options.sampling = c.sampling;
    return r;
  };
  for (int i = 0; i < o.warmup_requests; ++i) {
    const RequestRecord warm = run_request(engine, request_of(16, 8, 1000 + i), o.timeout_seconds, WorkloadClock::now());
    if (!warm.ok()) fail("bench engine: a warm-up request failed: {}", warm.error);
  }
  std::vector<std::vector<RequestRecord>> runs;
  for (int rep = 0; rep < o.repetitions; ++rep) {
    Progress progress(fmt::format("bench engine run {}", rep + 1), plan.size(), Progress::Unit::Items);
    std::mutex progress_mutex;
    const uint64_t run_seed = o.workload.seed + 7919 * static_cast<uint64_t>(rep + 1);
    auto execute = [&](const PlannedRequest& p, WorkloadClock::time_point start) {
      RequestRecord rec = run_request(engine, request_of(p.prompt_tokens, p.output_tokens, run_seed + p.index),
                                      o.timeout_seconds, start);
      std::lock_guard lock(progress_mutex);
      progress.advance(1);
      return rec;
    };
    runs.push_back(run_workload(plan, o.workload.concurrency, execute));
  }
  nlohmann::json servers = nlohmann::json::array();
  servers.push_back(serving_server_json(
      fmt::format("engine ({}, --parallel {})", engine.device_name(), c.engine.max_sequences), "in-process",
      c.model.filename().string(), "subject", runs));
  return serve_document(o, std::move(servers));
}

}  // namespace realizar::bench
