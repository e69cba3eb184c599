#include "bench/bandwidth.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "engine/backend_factory.h"
#include "util/counted.h"
#include "util/cpu_count.h"

namespace realizar::bench {
namespace {

constexpr size_t kBufferBytes = size_t{1} << 30;
constexpr int kPasses = 5;

// Sum of words[begin, end) in eight independent lanes, so that the adds never wait on each other
// and the compiler can keep several vector loads in flight.
uint64_t sum_words(const uint64_t* words, size_t begin, size_t end) {
  uint64_t lanes[8] = {};
  size_t i = begin;
  for (; i + 8 <= end; i += 8) {
    for (int l = 0; l < 8; ++l) lanes[l] += words[i + static_cast<size_t>(l)];
  }
  for (; i < end; ++i) lanes[0] += words[i];
  uint64_t total = 0;
  for (uint64_t lane : lanes) total += lane;
  return total;
}

}  // namespace

double measure_host_read_bandwidth(int threads) {
  threads = std::max(threads, 1);
  const size_t words_count = kBufferBytes / sizeof(uint64_t);
  // Not value-initialised: the loop below is the one pass that touches every page.
  const std::unique_ptr<uint64_t[]> words(new uint64_t[words_count]);
  for (size_t i = 0; i < words_count; ++i) words[i] = i;
  const size_t share = words_count / static_cast<size_t>(threads);
  std::vector<uint64_t> sums(static_cast<size_t>(threads));
  double best = 0;
  for (int pass = 0; pass <= kPasses; ++pass) {
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
      const size_t begin = static_cast<size_t>(t) * share;
      const size_t end = t + 1 == threads ? words_count : begin + share;
      workers.emplace_back([&, t, begin, end] { sums[static_cast<size_t>(t)] = sum_words(words.get(), begin, end); });
    }
    for (std::thread& w : workers) w.join();
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (pass > 0) best = std::max(best, static_cast<double>(kBufferBytes) / seconds);
  }
  // The sums are stored where the compiler cannot see them unused, so the loads stay.
  static volatile uint64_t sink;
  for (uint64_t s : sums) sink = sink + s;
  return best;
}

Bandwidth measure_bandwidth(const Backend& backend, int threads) {
  if (backend.name() == "cuda") {
    return {measure_copy_bandwidth(backend, threads), "device-to-device copy of 1 GiB, bytes read + written"};
  }
  const int n = threads > 0 ? threads : usable_cpu_count();
  return {measure_host_read_bandwidth(n), "host read of 1 GiB on " + counted(n, "thread")};
}

}  // namespace realizar::bench
