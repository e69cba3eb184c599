// The engine's scheduler thread: owns the backend and the KV manager, keeps the waiting and
// running requests, and runs one step after another (engine.h describes the policy).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "kv/kv_manager.h"
#include "realizar/backend.h"
#include "realizar/engine.h"
#include "realizar/sampling.h"
#include "realizar/tokenizer.h"

namespace realizar {

struct SchedulerLimits {
  int64_t context_length = 0;   // most tokens per sequence
  int max_sequences = 1;        // running at once
  int64_t max_batch_tokens = 512;
  int max_waiting = 0;          // 0: no limit
};

class Scheduler {
 public:
  using Clock = std::chrono::steady_clock;

  Scheduler(std::unique_ptr<Backend> backend, KvManager kv, const Tokenizer& tokenizer,
            const SchedulerLimits& limits);
  ~Scheduler();  // finishes every request as cancelled and joins the thread

  // Queues a checked request (Engine::submit checks it); throws RequestError when the queue is
  // full or the scheduler no longer accepts requests.
  void submit(uint64_t id, Request request, std::shared_ptr<RequestChannel> channel);
  void cancel(uint64_t id);
  void stop_accepting();
  EngineMetrics metrics() const;
  std::string_view backend_name() const { return backend_->name(); }

 private:
  struct Live;  // a request being served (scheduler.cpp)

  void loop();
  bool take_inbox();  // false when stopping
  void step();
  void plan(Batch& batch);
  bool schedule(Live& r, Batch& batch, int64_t& budget);
  void preempt(Live& r);
  void run(Batch& batch);
  void after_step(const Batch& batch);
  void emit(Live& r, int32_t token, const SampledToken& sampled);
  void finish(Live& r, FinishReason reason, const std::string& error = {});
  void drop_finished();
  void publish_metrics();
  void publish_kv_locked();  // the KV pool's counts into metrics_ (metrics_mutex_ held)

  std::unique_ptr<Backend> backend_;
  KvManager kv_;
  const Tokenizer& tokenizer_;
  SchedulerLimits limits_;

  // Shared with submitting threads.
  mutable std::mutex inbox_mutex_;
  std::condition_variable inbox_ready_;
  std::vector<std::unique_ptr<Live>> inbox_;
  std::vector<uint64_t> cancels_;
  bool stopping_ = false;
  bool accepting_ = true;
  size_t waiting_count_ = 0;  // waiting requests, for max_waiting (inbox + queue)

  // The scheduler thread's own.
  std::deque<std::unique_ptr<Live>> waiting_;
  std::vector<std::unique_ptr<Live>> running_;  // in admission order
  int32_t next_sequence_ = 0;
  Batch batch_;
  std::vector<Live*> batch_requests_;   // request of each batch token's sequence, per output row
  std::vector<int64_t> chunk_;          // tokens scheduled per batch request
  std::vector<RowSampling> rows_;
  std::vector<Live*> row_requests_;
  std::vector<SampledToken> sampled_;
  std::vector<int64_t> slots_;
  std::vector<BlockCopy> copies_;

  mutable std::mutex metrics_mutex_;
  EngineMetrics metrics_;

  std::thread thread_;
};

}  // namespace realizar
