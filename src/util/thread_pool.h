// A persistent pool of worker threads for data-parallel work (CPU backend, model synthesiser).
//
// Threads are created once. Waiting (for a task, for another thread's progress, for the workers to
// finish) spins for up to kSpinNanoseconds (pause instructions; most waits inside a forward pass
// end within a few microseconds) and then sleeps on a futex (std::atomic wait/notify), so an idle
// pool costs nothing and a busy one does not pay a system call per wake-up. Wakers only make the
// system call when a thread sleeps.
//
// Not supported: calling parallel_for or run from inside a running body (it throws
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
  // A task run by every thread at once: task(thread_index).
  using Task = std::function<void(int thread_index)>;

  static constexpr int64_t kSpinNanoseconds = 50'000;

  // n_threads counts the calling thread too: n_threads - 1 workers are started.
  // 0 means usable_cpu_count() (util/cpu_count.h). Negative values throw realizar::Error.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Threads taking part in a parallel_for or run, the calling thread included.
  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Splits [0, n) into size() contiguous chunks of sizes differing by at most one (chunk t goes
  // to thread t; empty chunks are not run), runs them, and returns when all have finished.
  // If bodies throw, the first exception caught is rethrown here after all chunks are done.
  void parallel_for(int64_t n, const Body& body);

  // Runs task(t) on every thread t of the pool at once and returns when all have returned. The
  // tasks may wait for each other with wait_for() and advance(). If a task throws, the first
  // exception is rethrown here; the other threads' wait_for() calls throw from then on (so no
  // thread waits for one that has left), and those exceptions are not reported.
  void run(const Task& task);

  // Inside run(): returns once `counter` holds `value` (other threads get it there with advance());
  // what they wrote before their advance() is visible after it.
  void wait_for(const std::atomic<uint32_t>& counter, uint32_t value);
  // counter += n, waking the threads asleep in wait_for().
  void advance(std::atomic<uint32_t>& counter, uint32_t n);

  // A process-wide pool with usable_cpu_count() threads, created on first use.
  static ThreadPool& global();

 private:
  void worker_loop(int thread_index);
  void run_task(int thread_index) noexcept;
  // Returns once done() is true: spins for up to kSpinNanoseconds, then sleeps until a wake().
  template <typename Done>
  void wait_until(Done done);
  // Wakes every sleeping thread to re-check what it waits for (no system call when none sleeps).
  void wake();

  std::vector<std::thread> workers_;
  std::mutex call_mutex_;                    // serializes calls from outside threads
  std::atomic<uint32_t> generation_{0};      // bumped to publish a new task (or shutdown)
  std::atomic<uint32_t> workers_busy_{0};    // workers still running the current task
  std::atomic<uint32_t> sleepers_{0};        // threads asleep in wait_until
  std::atomic<uint32_t> wake_epoch_{0};      // what sleepers sleep on (futex): bumped by wake()
  std::atomic<bool> aborted_{false};         // a task threw: wait_for throws until run() ends
  bool stopping_ = false;                    // written before a generation bump
  const Task* task_ = nullptr;               // the current task, valid while workers_busy_ > 0
  std::mutex error_mutex_;
  std::exception_ptr first_error_;
};

}  // namespace realizar
