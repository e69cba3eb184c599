#include "util/thread_pool.h"

#include <algorithm>
#include <chrono>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "realizar/error.h"
#include "util/cpu_count.h"

namespace realizar {
namespace {

// The pool whose task this thread is running, to refuse nested calls instead of deadlocking.
thread_local const ThreadPool* running_pool = nullptr;

// Thrown by wait_for() in the other threads once a task has thrown; never reported.
struct Aborted {};

// Chunk t of [0, n) split into `parts` contiguous chunks whose sizes differ by at most one.
std::pair<int64_t, int64_t> chunk_bounds(int64_t n, int parts, int t) {
  const int64_t base = n / parts;
  const int64_t extra = n % parts;  // the first `extra` chunks get one more index
  const int64_t begin = t * base + std::min<int64_t>(t, extra);
  return {begin, begin + base + (t < extra ? 1 : 0)};
}

void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

}  // namespace

ThreadPool::ThreadPool(int n_threads) {
  if (n_threads < 0) fail("ThreadPool: thread count must be >= 0, got {}", n_threads);
  if (n_threads == 0) n_threads = usable_cpu_count();
  workers_.reserve(n_threads - 1);
  for (int t = 1; t < n_threads; ++t) workers_.emplace_back([this, t] { worker_loop(t); });
}

ThreadPool::~ThreadPool() {
  stopping_ = true;
  generation_.fetch_add(1, std::memory_order_seq_cst);
  wake();
  for (std::thread& worker : workers_) worker.join();
}

template <typename Done>
void ThreadPool::wait_until(Done done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::nanoseconds(kSpinNanoseconds);
  for (int spins = 0; !done(); ++spins) {
    if (spins % 64 != 63 || std::chrono::steady_clock::now() < deadline) {
      cpu_relax();
      continue;
    }
    const uint32_t epoch = wake_epoch_.load(std::memory_order_seq_cst);
    sleepers_.fetch_add(1, std::memory_order_seq_cst);
    // A waker changes what done() reads before it reads sleepers_ (both sequentially consistent):
    // either it sees this sleeper and bumps the epoch, or done() below sees its change.
    if (!done() && wake_epoch_.load(std::memory_order_seq_cst) == epoch) wake_epoch_.wait(epoch, std::memory_order_seq_cst);
    sleepers_.fetch_sub(1, std::memory_order_seq_cst);
  }
}

void ThreadPool::wake() {
  if (sleepers_.load(std::memory_order_seq_cst) == 0) return;
  wake_epoch_.fetch_add(1, std::memory_order_seq_cst);
  wake_epoch_.notify_all();
}

ThreadPool& ThreadPool::global() {
  static ThreadPool pool(0);
  return pool;
}

void ThreadPool::parallel_for(int64_t n, const Body& body) {
  if (running_pool == this) fail("ThreadPool::parallel_for called from inside one of its own loop bodies");
  if (n <= 0) return;
  run([&](int thread_index) {
    const auto [begin, end] = chunk_bounds(n, size(), thread_index);
    if (begin < end) body(begin, end, thread_index);
  });
}

void ThreadPool::run(const Task& task) {
  if (running_pool == this) fail("ThreadPool::run called from inside one of its own loop bodies");
  std::lock_guard call_lock(call_mutex_);
  task_ = &task;
  first_error_ = nullptr;
  workers_busy_.store(static_cast<uint32_t>(workers_.size()), std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_seq_cst);  // publishes task_ to the workers
  wake();
  run_task(0);
  wait_until([this] { return workers_busy_.load(std::memory_order_acquire) == 0; });
  task_ = nullptr;
  aborted_.store(false, std::memory_order_relaxed);
  if (first_error_) std::rethrow_exception(first_error_);
}

void ThreadPool::wait_for(const std::atomic<uint32_t>& counter, uint32_t value) {
  wait_until([&] {
    return counter.load(std::memory_order_acquire) == value || aborted_.load(std::memory_order_acquire);
  });
  if (counter.load(std::memory_order_acquire) != value) throw Aborted{};
}

void ThreadPool::advance(std::atomic<uint32_t>& counter, uint32_t n) {
  counter.fetch_add(n, std::memory_order_seq_cst);  // releases this thread's writes
  wake();
}

void ThreadPool::run_task(int thread_index) noexcept {
  running_pool = this;
  try {
    (*task_)(thread_index);
  } catch (const Aborted&) {
    // Another thread's task threw first; its exception is the one reported.
  } catch (...) {
    {
      std::lock_guard error_lock(error_mutex_);
      if (!first_error_) first_error_ = std::current_exception();
    }
    aborted_.store(true, std::memory_order_seq_cst);
    wake();  // threads asleep in wait_for see aborted_
  }
  running_pool = nullptr;
}

void ThreadPool::worker_loop(int thread_index) {
  // The generation at construction: a task (or the shutdown) published before this thread got
  // here has already bumped it, and must not be missed.
  uint32_t seen = 0;
  while (true) {
    wait_until([&] { return generation_.load(std::memory_order_acquire) != seen; });
    seen = generation_.load(std::memory_order_acquire);
    if (stopping_) return;
    run_task(thread_index);
    if (workers_busy_.fetch_sub(1, std::memory_order_seq_cst) == 1) wake();
  }
}

}  // namespace realizar
