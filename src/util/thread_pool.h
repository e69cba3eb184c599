// A persistent pool of worker threads for data-parallel loops (CPU backend, model synthesiser).
//
// Threads are created once; each parallel_for wakes them through a generation counter
// (std::atomic wait/notify, i.e. a futex on Linux) after a short spin, so a call costs a few
// microseconds: a decode step calls it about a hundred times per token.
//
// Not supported: calling parallel_for from inside a running parallel_for body (it throws
// realizar::Error instead of deadlocking). Calls from different outside threads are serialized.
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace realizar {

class ThreadPool {
 public:
  // Body of a loop: handles indices [begin, end) on the thread numbered thread_index, in
  // [0, size()); index 0 is the calling thread. thread_index lets a body use per-thread scratch.
  using Body = std::function<void(int64_t begin, int64_t end, int thread_index)>;

  // n_threads counts the calling thread too: n_threads - 1 workers are started.
  // 0 means std::thread::hardware_concurrency(). Negative values throw realizar::Error.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Threads taking part in a parallel_for, the calling thread included.
  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Splits [0, n) into size() contiguous chunks of sizes differing by at most one (chunk t goes
  // to thread t; empty chunks are not run), runs them, and returns when all have finished.
  // If bodies throw, the first exception caught is rethrown here after all chunks are done.
  void parallel_for(int64_t n, const Body& body);

  // A process-wide pool with hardware_concurrency() threads, created on first use.
  static ThreadPool& global();

 private:
  void worker_loop(int thread_index);
  void run_chunk(int thread_index) noexcept;
  void wait_for_workers();

  std::vector<std::thread> workers_;
  std::mutex call_mutex_;                  // serializes parallel_for calls from outside threads
  std::atomic<uint32_t> generation_{0};    // bumped to publish a new job (or shutdown)
  std::atomic<int32_t> workers_busy_{0};   // workers still running the current job
  bool stopping_ = false;                  // written before a generation bump
  const Body* body_ = nullptr;             // the current job, valid while workers_busy_ > 0
  int64_t n_ = 0;
  std::mutex error_mutex_;
  std::exception_ptr first_error_;
};

}  // namespace realizar
