#include "engine/scheduler.h"

#include <algorithm>
#include <exception>

#include "kv/batch_slots.h"
#include "realizar/error.h"

namespace realizar {
namespace {

double seconds_between(Scheduler::Clock::time_point from, Scheduler::Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

}  // namespace

// A request being served. `tokens` is the prompt followed by the generated tokens; the first
// `computed` of them have their keys and values in the cache (after a preemption none has).
struct Scheduler::Live {
  Live(uint64_t request_id, Request r, std::shared_ptr<RequestChannel> c, const Tokenizer& tokenizer)
      : id(request_id), request(std::move(r)), channel(std::move(c)), tokens(request.prompt),
        decoder(tokenizer), stops(request.options.stop) {
    stats.prompt_tokens = static_cast<int64_t>(tokens.size());
  }

  int64_t pending() const { return static_cast<int64_t>(tokens.size()) - computed; }

  uint64_t id;
  int32_t seq = -1;  // KV manager sequence, given at first admission
  Request request;
  std::shared_ptr<RequestChannel> channel;
  std::vector<int32_t> tokens;
  int64_t computed = 0;
  StreamingDecoder decoder;
  StopMatcher stops;
  RequestStats stats;
  Clock::time_point submitted = Clock::now(), scheduled, first_token, last_token;
  bool admitted = false;
  bool done = false;
  RequestEvent event;  // what the current step produced, sent after it
};

Scheduler::Scheduler(std::unique_ptr<Backend> backend, KvManager kv, const Tokenizer& tokenizer,
                     const SchedulerLimits& limits)
    : backend_(std::move(backend)), kv_(std::move(kv)), tokenizer_(tokenizer), limits_(limits) {
  publish_metrics();
  thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() {
  {
    std::lock_guard lock(inbox_mutex_);
    stopping_ = true;
    accepting_ = false;
  }
  inbox_ready_.notify_one();
  thread_.join();
}

void Scheduler::submit(uint64_t id, Request request, std::shared_ptr<RequestChannel> channel) {
  auto live = std::make_unique<Live>(id, std::move(request), std::move(channel), tokenizer_);
  {
    std::lock_guard lock(inbox_mutex_);
    if (!accepting_) throw RequestError(RequestError::Code::ShuttingDown, "the server is shutting down");
    if (limits_.max_waiting > 0 && waiting_count_ >= static_cast<size_t>(limits_.max_waiting)) {
      throw RequestError(RequestError::Code::QueueFull,
                         fmt::format("too many requests are waiting ({}); try again later", waiting_count_));
    }
    ++waiting_count_;
    inbox_.push_back(std::move(live));
  }
  inbox_ready_.notify_one();
}

void Scheduler::cancel(uint64_t id) {
  {
    std::lock_guard lock(inbox_mutex_);
    cancels_.push_back(id);
  }
  inbox_ready_.notify_one();
}

void Scheduler::stop_accepting() {
  std::lock_guard lock(inbox_mutex_);
  accepting_ = false;
}

EngineMetrics Scheduler::metrics() const {
  std::lock_guard lock(metrics_mutex_);
  return metrics_;
}

void Scheduler::loop() {
  while (take_inbox()) {
    for (auto& r : running_) {
      if (r->channel->abandoned()) finish(*r, FinishReason::Cancelled);
    }
    for (auto& r : waiting_) {
      if (r->channel->abandoned()) finish(*r, FinishReason::Cancelled);
    }
    drop_finished();
    if (!running_.empty() || !waiting_.empty()) step();
    drop_finished();
    publish_metrics();
  }
  for (auto& r : running_) finish(*r, FinishReason::Cancelled);
  for (auto& r : waiting_) finish(*r, FinishReason::Cancelled);
  drop_finished();
  publish_metrics();
}

// Moves new requests to the queue and applies cancellations; sleeps while there is nothing to do.
bool Scheduler::take_inbox() {
  std::vector<std::unique_ptr<Live>> arrived;
  std::vector<uint64_t> cancelled;
  {
    std::unique_lock lock(inbox_mutex_);
    inbox_ready_.wait(lock, [&] {
      return stopping_ || !inbox_.empty() || !cancels_.empty() || !running_.empty() || !waiting_.empty();
    });
    if (stopping_) return false;
    arrived.swap(inbox_);
    cancelled.swap(cancels_);
  }
  for (auto& r : arrived) waiting_.push_back(std::move(r));
  for (const uint64_t id : cancelled) {
    for (auto& r : running_) {
      if (r->id == id) finish(*r, FinishReason::Cancelled);
    }
    for (auto& r : waiting_) {
      if (r->id == id) finish(*r, FinishReason::Cancelled);
    }
  }
  return true;
}

void Scheduler::step() {
  plan(batch_);
  if (batch_.size() == 0) {
    // Nothing fits even with no other sequence running: the head of the queue can never run.
    if (running_.empty() && !waiting_.empty()) {
      finish(*waiting_.front(), FinishReason::Error,
             "the request does not fit in the KV cache even alone (raise --kv-memory)");
    }
    return;
  }
  run(batch_);
}

// Running sequences first, oldest first (each its next token, or its next prompt chunk), then new
// ones from the front of the queue while the token budget, the sequence limit and the pool allow.
void Scheduler::plan(Batch& batch) {
  batch.clear();
  batch_requests_.clear();
  chunk_.clear();
  copies_.clear();
  int64_t budget = limits_.max_batch_tokens;
  for (size_t i = 0; i < running_.size() && budget > 0; ++i) {
    Live& r = *running_[i];
    while (!schedule(r, batch, budget)) {
      Live& victim = *running_.back();
      preempt(victim);
      if (&victim == &r) break;
    }
  }
  while (budget > 0 && !waiting_.empty() && running_.size() < static_cast<size_t>(limits_.max_sequences)) {
    Live& w = *waiting_.front();
    if (w.seq < 0) w.seq = next_sequence_++;
    const int64_t attached = kv_.attach_cached_prefix(w.seq, w.tokens);
    w.computed = attached;
    if (!schedule(w, batch, budget)) {
      kv_.release(w.seq);  // the attached prefix goes back until the request fits
      w.computed = 0;
      break;
    }
    const Clock::time_point now = Clock::now();
    {
      std::lock_guard lock(metrics_mutex_);
      metrics_.prefix_cache_queries += static_cast<int64_t>(w.tokens.size());
      metrics_.prefix_cache_hits += attached;
      if (!w.admitted) metrics_.request_queue_time.observe(seconds_between(w.submitted, now));
    }
    if (!w.admitted) {
      w.admitted = true;
      w.scheduled = now;
      w.stats.cached_tokens = attached;
      w.stats.queue_seconds = seconds_between(w.submitted, now);
    }
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
    std::lock_guard lock(inbox_mutex_);
    --waiting_count_;
  }
}

// Adds r's next pending tokens (all, or as many as the budget allows) to the batch, reserving
// their room; false when the pool cannot hold them (nothing added).
bool Scheduler::schedule(Live& r, Batch& batch, int64_t& budget) {
  const int64_t n = std::min(r.pending(), budget);
  if (n <= 0) return true;
  if (!kv_.reserve(r.seq, r.computed + n, copies_)) return false;
  const int64_t end = r.computed + n;
  for (int64_t p = r.computed; p < end; ++p) {
    batch.add(r.tokens[static_cast<size_t>(p)], static_cast<int32_t>(p), r.seq,
              p + 1 == static_cast<int64_t>(r.tokens.size()));
  }
  batch_requests_.push_back(&r);
  chunk_.push_back(n);
  budget -= n;
  return true;
}

// Recompute-preemption (vLLM): the sequence's blocks go back to the pool (filled ones stay in the
// prefix cache), and the request waits at the front of the queue to be computed again.
void Scheduler::preempt(Live& r) {
  kv_.release(r.seq);
  r.computed = 0;
  ++r.stats.preemptions;
  const auto it = std::find_if(running_.begin(), running_.end(), [&](const auto& p) { return p.get() == &r; });
  waiting_.push_front(std::move(*it));
  running_.erase(it);
  {
    std::lock_guard lock(inbox_mutex_);
    ++waiting_count_;
  }
  std::lock_guard lock(metrics_mutex_);
  ++metrics_.preemptions;
}

void Scheduler::run(Batch& batch) {
  rows_.clear();
  row_requests_.clear();
  for (size_t i = 0; i < batch_requests_.size(); ++i) {
    Live& r = *batch_requests_[i];
    if (r.computed + chunk_[i] != static_cast<int64_t>(r.tokens.size())) continue;  // a prompt chunk
    RowSampling row;
    row.params = r.request.options.sampling;
    row.history = r.tokens;
    row.position = static_cast<int64_t>(r.tokens.size());
    row.top_logprobs = r.request.options.top_logprobs;
    rows_.push_back(row);
    row_requests_.push_back(&r);
  }
  const Clock::time_point start = Clock::now();
  try {
    if (!copies_.empty()) backend_->copy_blocks(copies_);
    slots_of(kv_, batch, slots_);
    backend_->sample(batch, KvStep{kv_, slots_}, rows_, sampled_);
  } catch (const std::exception& e) {
    // The step failed as a whole (a device error): its requests fail, the others wait for the next.
    for (Live* r : batch_requests_) finish(*r, FinishReason::Error, e.what());
    return;
  }
  commit_batch(kv_, batch);
  int64_t prompt_computed = 0;
  for (size_t i = 0; i < batch_requests_.size(); ++i) {
    Live& r = *batch_requests_[i];
    prompt_computed += std::max<int64_t>(0, std::min(r.computed + chunk_[i], r.stats.prompt_tokens) - r.computed);
    r.computed += chunk_[i];
  }
  {
    std::lock_guard lock(metrics_mutex_);
    metrics_.prompt_tokens += prompt_computed;
    ++metrics_.steps;
    metrics_.iteration_tokens.observe(static_cast<double>(batch.size()));
    metrics_.step_duration.observe(seconds_between(start, Clock::now()));
  }
  for (size_t row = 0; row < row_requests_.size(); ++row) {
    Live& r = *row_requests_[row];
    const SampledToken& sampled = sampled_[row];
    if (!sampled.error.empty()) {
      finish(r, FinishReason::Error, sampled.error);
    } else {
      emit(r, sampled.token, sampled);
    }
  }
  publish_metrics();  // before the events: a reader sees at least the state that produced them
  for (Live* r : row_requests_) {
    if (!r->done && (!r->event.text.empty() || !r->event.tokens.empty())) {
      r->event.time = Clock::now();
      r->channel->push(std::move(r->event));
      r->event = RequestEvent{};
    }
  }
}

// A sampled token: becomes the request's next token, its text goes through the stop strings, and
// the request ends on EOS, a stop string, max_tokens or a full context.
void Scheduler::emit(Live& r, int32_t token, const SampledToken& sampled) {
  const Clock::time_point now = Clock::now();
  {
    std::lock_guard lock(metrics_mutex_);
    if (r.stats.generated_tokens == 0) {
      metrics_.time_to_first_token.observe(seconds_between(r.submitted, now));
    } else {
      metrics_.inter_token_latency.observe(seconds_between(r.last_token, now));
    }
  }
  if (r.stats.generated_tokens == 0) r.first_token = now;
  r.last_token = now;
  const GenerationOptions& o = r.request.options;
  if (!o.ignore_eos && tokenizer_.is_eog(token)) return finish(r, FinishReason::Stop);
  r.tokens.push_back(token);
  ++r.stats.generated_tokens;
  {
    std::lock_guard lock(metrics_mutex_);
    ++metrics_.generation_tokens;
  }
  GeneratedToken& out = r.event.tokens.emplace_back();
  out.id = token;
  out.logprob = sampled.logprob;
  out.top = sampled.top;
  const StopMatcher::Result piece = r.stops.feed(r.decoder.feed(token));
  r.event.text += piece.text;
  if (piece.stopped) return finish(r, FinishReason::Stop);
  if (r.stats.generated_tokens >= o.max_tokens || static_cast<int64_t>(r.tokens.size()) >= limits_.context_length) {
    finish(r, FinishReason::Length);
  }
}

// Sends the request's last event (the text held back for a possible stop string included, unless
// one matched) and gives its blocks back.
void Scheduler::finish(Live& r, FinishReason reason, const std::string& error) {
  if (r.done) return;
  r.done = true;
  if (reason == FinishReason::Stop || reason == FinishReason::Length) {
    if (!r.stops.stopped()) {
      const StopMatcher::Result last = r.stops.feed(r.decoder.finish());
      r.event.text += last.text;
      if (!last.stopped) r.event.text += r.stops.flush();
      if (last.stopped) reason = FinishReason::Stop;
    }
  }
  if (r.seq >= 0) kv_.release(r.seq);
  const Clock::time_point now = Clock::now();
  RequestStats& s = r.stats;
  s.total_seconds = seconds_between(r.submitted, now);
  if (s.generated_tokens > 0 || reason == FinishReason::Stop) {
    const Clock::time_point first = s.generated_tokens > 0 ? r.first_token : r.last_token;
    s.ttft_seconds = seconds_between(r.submitted, first);
    s.prompt_seconds = r.admitted ? seconds_between(r.scheduled, first) : 0;
    s.decode_seconds = seconds_between(first, r.last_token);
  }
  {  // counted before the reader can see the last event, so the two always agree
    std::lock_guard lock(metrics_mutex_);
    publish_kv_locked();
    ++metrics_.requests_finished[finish_reason_name(reason)];
    if (reason != FinishReason::Cancelled) metrics_.e2e_request_latency.observe(s.total_seconds);
  }
  r.event.finish = reason;
  r.event.error = error;
  r.event.stats = s;
  r.event.time = now;
  r.channel->push(std::move(r.event));
}

void Scheduler::drop_finished() {
  std::erase_if(running_, [](const auto& r) { return r->done; });
  const size_t before = waiting_.size();
  std::erase_if(waiting_, [](const auto& r) { return r->done; });
  if (waiting_.size() != before) {
    std::lock_guard lock(inbox_mutex_);
    waiting_count_ -= before - waiting_.size();
  }
}

void Scheduler::publish_metrics() {
  std::lock_guard lock(metrics_mutex_);
  metrics_.requests_running = static_cast<int64_t>(running_.size());
  {
    std::lock_guard inbox(inbox_mutex_);
    metrics_.requests_waiting = static_cast<int64_t>(waiting_count_);
  }
  publish_kv_locked();
}

void Scheduler::publish_kv_locked() {
  metrics_.kv_blocks_total = kv_.block_count();
  metrics_.kv_blocks_used = kv_.used_block_count();
  metrics_.kv_blocks_free = kv_.free_block_count();
  metrics_.kv_blocks_cached = kv_.cached_block_count();
  metrics_.kv_block_size = kv_.block_size();
}

}  // namespace realizar
