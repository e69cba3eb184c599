#include "util/thread_pool.h"

#include <algorithm>

#include "realizar/error.h"

namespace realizar {
namespace {

// The pool whose loop body this thread is running, to refuse nested calls instead of deadlocking.
thread_local const ThreadPool* running_pool = nullptr;

// Chunk t of [0, n) split into `parts` contiguous chunks whose sizes differ by at most one.
std::pair<int64_t, int64_t> chunk_bounds(int64_t n, int parts, int t) {
  const int64_t base = n / parts;
  const int64_t extra = n % parts;  // the first `extra` chunks get one more index
  const int64_t begin = t * base + std::min<int64_t>(t, extra);
  return {begin, begin + base + (t < extra ? 1 : 0)};
}

}  // namespace

ThreadPool::ThreadPool(int n_threads) {
  if (n_threads < 0) fail("ThreadPool: thread count must be >= 0, got {}", n_threads);
  if (n_threads == 0) n_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  workers_.reserve(n_threads - 1);
  for (int t = 1; t < n_threads; ++t) workers_.emplace_back([this, t] { worker_loop(t); });
}

ThreadPool::~ThreadPool() {
  stopping_ = true;
  generation_.fetch_add(1, std::memory_order_release);
  generation_.notify_all();
  for (std::thread& worker : workers_) worker.join();
}

ThreadPool& ThreadPool::global() {
  static ThreadPool pool(0);
  return pool;
}

void ThreadPool::parallel_for(int64_t n, const Body& body) {
  if (running_pool == this) fail("ThreadPool::parallel_for called from inside one of its own loop bodies");
  if (n <= 0) return;
  std::lock_guard call_lock(call_mutex_);
  body_ = &body;
  n_ = n;
  first_error_ = nullptr;
  workers_busy_.store(static_cast<int32_t>(workers_.size()), std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_release);  // publishes body_, n_ to the workers
  generation_.notify_all();
  run_chunk(0);
  wait_for_workers();
  body_ = nullptr;
  if (first_error_) std::rethrow_exception(first_error_);
}

void ThreadPool::wait_for_workers() {
  for (int32_t busy = workers_busy_.load(std::memory_order_acquire); busy != 0;
       busy = workers_busy_.load(std::memory_order_acquire)) {
    workers_busy_.wait(busy, std::memory_order_acquire);
  }
}

void ThreadPool::run_chunk(int thread_index) noexcept {
  const auto [begin, end] = chunk_bounds(n_, size(), thread_index);
  if (begin == end) return;
  running_pool = this;
  try {
    (*body_)(begin, end, thread_index);
  } catch (...) {
    std::lock_guard error_lock(error_mutex_);
    if (!first_error_) first_error_ = std::current_exception();
  }
  running_pool = nullptr;
}

void ThreadPool::worker_loop(int thread_index) {
  // The generation at construction: a job (or the shutdown) published before this thread got
  // here has already bumped it, and must not be missed.
  uint32_t seen = 0;
  while (true) {
    generation_.wait(seen, std::memory_order_acquire);  // returns once the generation changed
    seen = generation_.load(std::memory_order_acquire);
    if (stopping_) return;
    run_chunk(thread_index);
    if (workers_busy_.fetch_sub(1, std::memory_order_acq_rel) == 1) workers_busy_.notify_one();
  }
}

}  // namespace realizar
