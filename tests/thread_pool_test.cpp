#include "util/thread_pool.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <vector>

#include "realizar/error.h"
#include "util/cpu_count.h"

namespace realizar {
namespace {

// Runs parallel_for over [0, n) and returns how many times each index was visited.
std::vector<int> visit_counts(ThreadPool& pool, int64_t n) {
  std::vector<std::atomic<int>> counts(n);
  pool.parallel_for(n, [&](int64_t begin, int64_t end, int thread_index) {
    EXPECT_LT(begin, end);
    EXPECT_GE(thread_index, 0);
    EXPECT_LT(thread_index, pool.size());
    for (int64_t i = begin; i < end; ++i) counts[i].fetch_add(1);
  });
  return std::vector<int>(counts.begin(), counts.end());
}

TEST(ThreadPool, SizeCountsTheCallingThread) {
  EXPECT_EQ(ThreadPool(1).size(), 1);
  EXPECT_EQ(ThreadPool(4).size(), 4);
  EXPECT_EQ(ThreadPool(0).size(), usable_cpu_count());
  EXPECT_THROW(ThreadPool(-1), Error);
}

TEST(ThreadPool, VisitsEveryIndexExactlyOnce) {
  for (int threads : {1, 3, 4, 8}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 2, 3, 5, 7, 8, 9, 1000, 100003}) {
      std::vector<int> counts = visit_counts(pool, n);
      EXPECT_THAT(counts, ::testing::Each(1)) << "threads " << threads << ", n " << n;
    }
  }
}

TEST(ThreadPool, ChunksAreContiguousBalancedAndOwnedByTheirThread) {
  ThreadPool pool(4);
  std::vector<std::pair<int64_t, int64_t>> ranges(4, {-1, -1});
  pool.parallel_for(10, [&](int64_t begin, int64_t end, int thread_index) { ranges[thread_index] = {begin, end}; });
  // 10 = 3 + 3 + 2 + 2
  EXPECT_EQ(ranges, (std::vector<std::pair<int64_t, int64_t>>{{0, 3}, {3, 6}, {6, 8}, {8, 10}}));
}

TEST(ThreadPool, FewerIndicesThanThreadsRunsOnlyNonEmptyChunks) {
  ThreadPool pool(8);
  std::atomic<int> calls{0};
  pool.parallel_for(3, [&](int64_t begin, int64_t end, int) {
    EXPECT_EQ(end - begin, 1);
    calls++;
  });
  EXPECT_EQ(calls.load(), 3);
}

TEST(ThreadPool, ExceptionFromAWorkerPropagatesAfterAllChunksFinish) {
  ThreadPool pool(4);
  std::atomic<int> finished{0};
  auto body = [&](int64_t begin, int64_t, int thread_index) {
    if (thread_index == 2) throw std::runtime_error("chunk at " + std::to_string(begin) + " failed");
    finished++;
  };
  try {
    pool.parallel_for(8, body);
    FAIL() << "expected an exception";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "chunk at 4 failed");
  }
  EXPECT_EQ(finished.load(), 3);
  // The pool is still usable afterwards.
  EXPECT_THAT(visit_counts(pool, 100), ::testing::Each(1));
}

TEST(ThreadPool, ExceptionFromTheCallingThreadPropagates) {
  ThreadPool pool(3);
  EXPECT_THROW(pool.parallel_for(3, [](int64_t, int64_t, int t) { if (t == 0) throw Error("caller chunk"); }), Error);
}

TEST(ThreadPool, ManyBackToBackCalls) {
  ThreadPool pool(4);
  std::atomic<int64_t> total{0};
  for (int call = 0; call < 10000; ++call) {
    pool.parallel_for(16, [&](int64_t begin, int64_t end, int) { total += end - begin; });
  }
  EXPECT_EQ(total.load(), 16 * 10000);
}

TEST(ThreadPool, NestedCallFromALoopBodyIsRefused) {
  ThreadPool pool(2);
  EXPECT_THAT([&] { pool.parallel_for(2, [&](int64_t, int64_t, int) { pool.parallel_for(2, [](int64_t, int64_t, int) {}); }); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("from inside one of its own loop bodies")));
}

TEST(ThreadPool, RunCallsTheTaskOnceOnEveryThread) {
  ThreadPool pool(4);
  std::vector<std::atomic<int>> calls(4);
  pool.run([&](int thread) { calls[static_cast<size_t>(thread)]++; });
  for (const auto& c : calls) EXPECT_EQ(c.load(), 1);
}

// A barrier made of wait_for/advance: each phase, every thread writes its slot, advances the
// phase's counter and waits for all; then it must see every write of the phase.
TEST(ThreadPool, WaitForSeesEveryWriteBeforeTheAdvances) {
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    constexpr int kPhases = 2000;
    std::vector<std::atomic<uint32_t>> arrived(2 * kPhases);
    std::vector<int> slots(static_cast<size_t>(threads), -1);
    std::atomic<int> wrong{0};
    pool.run([&](int thread) {
      for (int phase = 0; phase < kPhases; ++phase) {
        slots[static_cast<size_t>(thread)] = phase;
        pool.advance(arrived[2 * phase], 1);
        pool.wait_for(arrived[2 * phase], static_cast<uint32_t>(threads));
        for (int s : slots) wrong += s != phase;
        pool.advance(arrived[2 * phase + 1], 1);
        pool.wait_for(arrived[2 * phase + 1], static_cast<uint32_t>(threads));
      }
    });
    EXPECT_EQ(wrong.load(), 0) << threads << " threads";
  }
}

// A thread that advances late (after the others have stopped spinning and gone to sleep) still
// wakes them.
TEST(ThreadPool, AdvanceWakesSleepingThreads) {
  ThreadPool pool(3);
  std::atomic<uint32_t> ready{0};
  std::atomic<int> after{0};
  pool.run([&](int thread) {
    if (thread == 2) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      pool.advance(ready, 1);
    }
    pool.wait_for(ready, 1);
    after++;
  });
  EXPECT_EQ(after.load(), 3);
}

// A task that throws while the others wait for it: they are released, and run() rethrows the
// first exception (not a hang).
TEST(ThreadPool, ExceptionReleasesThreadsWaitingForTheThrower) {
  ThreadPool pool(3);
  std::atomic<uint32_t> never{0};
  std::atomic<int> passed{0};
  EXPECT_THAT([&] {
    pool.run([&](int thread) {
      if (thread == 1) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));  // the others are asleep by now
        throw Error("thread 1 failed");
      }
      pool.wait_for(never, 1);
      passed++;
    });
  }, ::testing::ThrowsMessage<Error>(::testing::HasSubstr("thread 1 failed")));
  EXPECT_EQ(passed.load(), 0);
  // The pool works afterwards.
  std::atomic<uint32_t> count{0};
  pool.run([&](int) {
    pool.advance(count, 1);
    pool.wait_for(count, 3);
    passed++;
  });
  EXPECT_EQ(passed.load(), 3);
}

TEST(ThreadPool, NestedRunIsRefused) {
  ThreadPool pool(2);
  EXPECT_THAT([&] { pool.run([&](int) { pool.run([](int) {}); }); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("run called from inside one of its own loop bodies")));
}

TEST(ThreadPool, GlobalPoolIsUsable) {
  EXPECT_EQ(&ThreadPool::global(), &ThreadPool::global());
  EXPECT_THAT(visit_counts(ThreadPool::global(), 777), ::testing::Each(1));
}

}  // namespace
}  // namespace realizar
