// The statistics of `apr bench` (summaries, percentiles, the median's confidence interval,
// outliers, the stopping rule), the serving workload generator and the serving metrics, on
// synthetic samples and request records whose answers are known independently: numpy for
// moments and percentiles, the exact binomial for the interval's coverage, hand-computed
// timelines for the serving metrics.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <map>
#include <mutex>
#include <thread>

#include "bench/serving_metrics.h"
#include "bench/stats.h"
#include "bench/workload.h"
#include "realizar/error.h"
#include "test_support.h"

namespace realizar::bench {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

using realizar::testing::error_of;

// Reference values: numpy 2.4 (np.mean, np.median, np.std(ddof=1), np.percentile).
const std::vector<double> kSamples = {10.2, 9.8, 10.5, 10.1, 30.0, 9.9, 10.3};

TEST(BenchStats, SummaryMatchesNumpy) {
  const Summary s = summarize(kSamples);
  EXPECT_EQ(s.count, 7u);
  EXPECT_NEAR(s.mean, 12.971428571428572, 1e-12);
  EXPECT_NEAR(s.median, 10.2, 1e-12);
  EXPECT_NEAR(s.stdev, 7.512592603026442, 1e-12);
  EXPECT_NEAR(s.cv, 0.5791646279866199, 1e-12);
  EXPECT_EQ(s.min, 9.8);
  EXPECT_EQ(s.max, 30.0);
}

TEST(BenchStats, OutliersAreFlaggedByMedianAbsoluteDeviationAndKept) {
  const Summary s = summarize(kSamples);
  // MAD = 0.3; 30.0 has modified z = 0.6745 * 19.8 / 0.3 = 44.5; 10.5 has 0.67.
  EXPECT_THAT(s.outliers, ElementsAre(4u));
  EXPECT_EQ(s.count, kSamples.size());  // flagged, not dropped
  EXPECT_THAT(summarize(std::vector<double>{1, 2, 3, 4, 5}).outliers, ElementsAre());
  // MAD 0: the one sample unlike the others is flagged.
  EXPECT_THAT(summarize(std::vector<double>{5, 5, 5, 7, 5}).outliers, ElementsAre(3u));
}

TEST(BenchStats, PercentilesInterpolateLinearlyLikeNumpy) {
  EXPECT_NEAR(percentile(kSamples, 50), 10.2, 1e-12);
  EXPECT_NEAR(percentile(kSamples, 95), 24.149999999999984, 1e-9);
  EXPECT_NEAR(percentile(kSamples, 99), 28.82999999999999, 1e-9);
  EXPECT_NEAR(percentile(kSamples, 37.5), 10.125, 1e-12);
  EXPECT_EQ(percentile(kSamples, 0), 9.8);
  EXPECT_EQ(percentile(kSamples, 100), 30.0);
  EXPECT_EQ(percentile(std::vector<double>{4.0}, 99), 4.0);
  const Percentiles p = percentiles(kSamples);
  EXPECT_NEAR(p.p95, 24.15, 1e-9);
  EXPECT_THAT(error_of([] { percentile(std::vector<double>{}, 50); }), HasSubstr("no samples"));
  EXPECT_THAT(error_of([] { percentile(kSamples, 101); }), HasSubstr("not in [0, 100]"));
}

// Exact coverage of [x(k), x(n+1-k)]: 1 - 2 * sum_{i<k} C(n, i) / 2^n.
double coverage(int n, int k) {
  double tail = 0;
  for (int i = 0; i < k; ++i) tail += std::exp(std::lgamma(n + 1.0) - std::lgamma(i + 1.0) -
                                               std::lgamma(n - i + 1.0) - n * std::log(2.0));
  return 1 - 2 * tail;
}

std::vector<double> one_to(int n) {
  std::vector<double> v;
  for (int i = n; i >= 1; --i) v.push_back(i);  // unsorted on purpose
  return v;
}

TEST(BenchStats, MedianIntervalUsesTheWidestRanksWithAtLeast95PercentCoverage) {
  // n -> k: the largest k with coverage >= 0.95 (enumerated with Python's math.comb).
  const std::map<int, int> expected_k = {{6, 1}, {7, 1}, {10, 2}, {20, 6}, {100, 40}};
  for (const auto& [n, k] : expected_k) {
    const Interval ci = summarize(one_to(n)).median_ci;
    EXPECT_EQ(ci.low, k) << "n=" << n;
    EXPECT_EQ(ci.high, n + 1 - k) << "n=" << n;
    EXPECT_NEAR(ci.level, coverage(n, k), 1e-12) << "n=" << n;
    EXPECT_GE(ci.level, 0.95);
    EXPECT_LT(coverage(n, k + 1), 0.95) << "n=" << n;
  }
  EXPECT_NEAR(summarize(one_to(100)).median_ci.level, 0.9647997997822952, 1e-12);
}

TEST(BenchStats, SmallSamplesGiveTheRangeWithItsActualCoverage) {
  const Interval five = summarize(std::vector<double>{3, 1, 4, 1.5, 9}).median_ci;
  EXPECT_EQ(five.low, 1);
  EXPECT_EQ(five.high, 9);
  EXPECT_DOUBLE_EQ(five.level, 0.9375);
  EXPECT_DOUBLE_EQ(summarize(std::vector<double>{2, 1}).median_ci.level, 0.5);
  const Summary one = summarize(std::vector<double>{7});
  EXPECT_EQ(one.median_ci.level, 0.0);
  EXPECT_EQ(one.stdev, 0.0);
  EXPECT_THAT(error_of([] { summarize(std::vector<double>{}); }), HasSubstr("no samples"));
}

TEST(BenchStats, StoppingRuleRunsTheMinimumThenUntilTheMeanIsPreciseEnough) {
  RepetitionPolicy fixed;
  fixed.repetitions = 3;
  EXPECT_TRUE(wants_another_run(std::vector<double>{1, 2}, fixed));
  EXPECT_FALSE(wants_another_run(std::vector<double>{1, 2, 3}, fixed));

  // 1..20: CV of the mean = stdev / mean / sqrt(20) = 0.12599 (numpy).
  EXPECT_NEAR(cv_of_mean(one_to(20)), 0.1259881576697424, 1e-12);
  EXPECT_TRUE(std::isinf(cv_of_mean(std::vector<double>{1})));
  RepetitionPolicy adaptive;
  adaptive.repetitions = 5;
  adaptive.cv_target = 0.13;
  adaptive.max_repetitions = 30;
  EXPECT_FALSE(wants_another_run(one_to(20), adaptive));
  adaptive.cv_target = 0.12;
  EXPECT_TRUE(wants_another_run(one_to(20), adaptive));
  adaptive.max_repetitions = 20;
  EXPECT_FALSE(wants_another_run(one_to(20), adaptive));  // the cap
}

// ---- workload ------------------------------------------------------------------------------------

TEST(BenchWorkload, LengthsAreUniformInTheirRangesAndFixedBySeed) {
  ServingWorkload w;
  w.requests = 4000;
  w.prompt_tokens = {128, 1024};
  w.output_tokens = {64, 256};
  w.seed = 7;
  const auto plan = plan_requests(w);
  ASSERT_EQ(plan.size(), 4000u);
  double prompt_sum = 0;
  int64_t lo = 1 << 30, hi = 0;
  for (const PlannedRequest& r : plan) {
    EXPECT_GE(r.prompt_tokens, 128);
    EXPECT_LE(r.prompt_tokens, 1024);
    EXPECT_GE(r.output_tokens, 64);
    EXPECT_LE(r.output_tokens, 256);
    EXPECT_EQ(r.arrival_seconds, 0.0);  // no rate: all at once
    prompt_sum += static_cast<double>(r.prompt_tokens);
    lo = std::min(lo, r.prompt_tokens);
    hi = std::max(hi, r.prompt_tokens);
  }
  // Uniform on 128..1024: mean 576, sd 259 -> the mean of 4000 draws is within 576 +- 4.1 (1 sd).
  EXPECT_NEAR(prompt_sum / 4000, 576, 4.1 * 4);
  EXPECT_LE(lo, 130);
  EXPECT_GE(hi, 1022);

  const auto again = plan_requests(w);
  for (size_t i = 0; i < plan.size(); ++i) {
    EXPECT_EQ(again[i].prompt_tokens, plan[i].prompt_tokens);
    EXPECT_EQ(again[i].output_tokens, plan[i].output_tokens);
  }
  w.seed = 8;
  const auto other = plan_requests(w);
  int same = 0;
  for (size_t i = 0; i < plan.size(); ++i) same += other[i].prompt_tokens == plan[i].prompt_tokens;
  EXPECT_LT(same, 40);  // 1/897 chance each
}

TEST(BenchWorkload, PoissonArrivalsHaveExponentialGapsAtTheRate) {
  ServingWorkload w;
  w.requests = 5001;
  w.rate = 4.0;  // mean gap 0.25 s
  const auto plan = plan_requests(w);
  EXPECT_EQ(plan.front().arrival_seconds, 0.0);
  std::vector<double> gaps;
  for (size_t i = 1; i < plan.size(); ++i) {
    gaps.push_back(plan[i].arrival_seconds - plan[i - 1].arrival_seconds);
    ASSERT_GE(gaps.back(), 0.0);
  }
  const Summary s = summarize(gaps);
  // Exponential(rate 4): mean 0.25, sd 0.25, median ln 2 / 4 = 0.1733. With 5000 gaps the
  // mean's standard error is 0.0035.
  EXPECT_NEAR(s.mean, 0.25, 4 * 0.0035);
  EXPECT_NEAR(s.stdev, 0.25, 0.02);
  EXPECT_NEAR(s.median, std::log(2.0) / 4, 0.01);
}

TEST(BenchWorkload, BadWorkloadsAreRefusedByName) {
  ServingWorkload w;
  w.requests = 0;
  EXPECT_THAT(error_of([&] { plan_requests(w); }), HasSubstr("at least 1 request"));
  w.requests = 1;
  w.rate = -1;
  EXPECT_THAT(error_of([&] { plan_requests(w); }), HasSubstr("rate -1"));
  w.rate = 0;
  w.output_tokens = {5, 4};
  EXPECT_THAT(error_of([&] { plan_requests(w); }), HasSubstr("output length range 5-4"));
}

TEST(BenchWorkload, TokenRangesParse) {
  EXPECT_EQ(parse_token_range("128-1024", "--prompt-len").min, 128);
  EXPECT_EQ(parse_token_range("128-1024", "--prompt-len").max, 1024);
  EXPECT_EQ(parse_token_range("256", "--prompt-len").min, 256);
  EXPECT_EQ(parse_token_range("256", "--prompt-len").max, 256);
  for (const char* bad : {"", "-", "12-", "a-b", "0-5", "5-x", "1.5", "10-20-30"}) {
    EXPECT_THAT(error_of([&] { parse_token_range(bad, "--prompt-len"); }),
                HasSubstr("--prompt-len"))
        << bad;
  }
  EXPECT_THAT(error_of([] { parse_token_range("9-3", "--output-len"); }),
              HasSubstr("minimum above its maximum"));
}

TEST(BenchWorkload, RunnerHonoursArrivalTimesAndTheConcurrencyLimit) {
  ServingWorkload w;
  w.requests = 12;
  const auto plan = plan_requests(w);
  std::atomic<int> in_flight{0}, most{0};
  auto execute = [&](const PlannedRequest& r, WorkloadClock::time_point start) {
    const int now = ++in_flight;
    int seen = most.load();
    while (now > seen && !most.compare_exchange_weak(seen, now)) {
    }
    RequestRecord rec;
    rec.send_time = std::chrono::duration<double>(WorkloadClock::now() - start).count();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    rec.first_token_time = rec.end_time =
        std::chrono::duration<double>(WorkloadClock::now() - start).count();
    rec.output_tokens = r.index;  // marks which request the record belongs to
    --in_flight;
    return rec;
  };
  const auto records = run_workload(plan, 3, execute);
  ASSERT_EQ(records.size(), 12u);
  for (int i = 0; i < 12; ++i) EXPECT_EQ(records[i].output_tokens, i);  // plan order
  EXPECT_EQ(most.load(), 3);

  // Arrivals: request i may not start before its arrival time.
  std::vector<PlannedRequest> spaced = plan_requests(w);
  for (size_t i = 0; i < spaced.size(); ++i) spaced[i].arrival_seconds = 0.01 * static_cast<double>(i);
  most = 0;
  const auto timed = run_workload(spaced, 0, execute);
  for (size_t i = 0; i < timed.size(); ++i) EXPECT_GE(timed[i].send_time, spaced[i].arrival_seconds);
}

// ---- serving metrics ----------------------------------------------------------------------------

RequestRecord record(double send, std::vector<double> tokens, double end, int64_t prompt) {
  RequestRecord r;
  r.prompt_tokens = prompt;
  r.output_tokens = static_cast<int64_t>(tokens.size());
  r.send_time = send;
  r.first_token_time = tokens.empty() ? end : tokens.front();
  r.token_times = std::move(tokens);
  r.end_time = end;
  return r;
}

TEST(BenchServingMetrics, HandComputedTimeline) {
  // A: sent at 0, tokens at 0.1, 0.2, 0.3, 0.4, done 0.4. B: sent at 0.1, tokens 0.5, 0.7, done
  // 0.8. C failed.
  std::vector<RequestRecord> records = {record(0.0, {0.1, 0.2, 0.3, 0.4}, 0.4, 10),
                                        record(0.1, {0.5, 0.7}, 0.8, 20)};
  RequestRecord failed;
  failed.send_time = 0.2;
  failed.end_time = 0.3;
  failed.error = "HTTP 500: boom";
  records.push_back(failed);
  records[1].cached_prompt_tokens = 16;

  const ServingMetrics m = summarize_serving(records);
  EXPECT_EQ(m.completed, 2);
  EXPECT_EQ(m.failed, 1);
  EXPECT_THAT(m.errors, ElementsAre("HTTP 500: boom"));
  EXPECT_DOUBLE_EQ(m.duration_seconds, 0.8);
  EXPECT_EQ(m.prompt_tokens, 30);
  EXPECT_EQ(m.output_tokens, 6);
  EXPECT_EQ(m.cached_prompt_tokens, 16);
  EXPECT_NEAR(m.request_throughput, 2 / 0.8, 1e-12);
  EXPECT_NEAR(m.output_throughput, 6 / 0.8, 1e-12);
  EXPECT_NEAR(m.total_token_throughput, 36 / 0.8, 1e-12);
  // A decodes 3 tokens over [0.1, 0.4], B 1 token over [0.5, 0.7]: 4 tokens in 0.5 s of decoding.
  EXPECT_NEAR(m.aggregate_decode_throughput, 8.0, 1e-9);
  // TTFT 100 ms and 400 ms.
  ASSERT_TRUE(m.ttft_ms && m.itl_ms && m.tpot_ms && m.e2e_ms);
  EXPECT_NEAR(m.ttft_ms->percentiles.p50, 250, 1e-9);
  EXPECT_NEAR(m.ttft_ms->percentiles.p99, 100 + 0.99 * 300, 1e-9);
  EXPECT_NEAR(m.ttft_ms->mean, 250, 1e-9);
  // ITL: 100, 100, 100 (A), 200 (B): numpy percentile 95 of [100,100,100,200] = 185.
  EXPECT_NEAR(m.itl_ms->percentiles.p50, 100, 1e-9);
  EXPECT_NEAR(m.itl_ms->percentiles.p95, 185, 1e-9);
  EXPECT_NEAR(m.itl_ms->mean, 125, 1e-9);
  // TPOT: A (400 - 100) / 3 = 100, B (800 - 500) / 1 = 300.
  EXPECT_NEAR(m.tpot_ms->mean, 200, 1e-9);
  // E2E: 400 and 700.
  EXPECT_NEAR(m.e2e_ms->percentiles.p50, 550, 1e-9);
}

TEST(BenchServingMetrics, AggregateDecodeRateOfParallelSequencesIsTheirSum) {
  // Eight sequences decoding together, one token each every 50 ms for 33 tokens: each runs at
  // 20 tok/s, together 160 tok/s, as `apr bench --parallel 8` counts them.
  std::vector<RequestRecord> records;
  for (int s = 0; s < 8; ++s) {
    std::vector<double> t;
    for (int i = 0; i < 33; ++i) t.push_back(0.5 + 0.05 * i);
    records.push_back(record(0, t, t.back(), 100));
  }
  EXPECT_NEAR(summarize_serving(records).aggregate_decode_throughput, 160.0, 1e-9);

  // The same eight in two waves of four (a concurrency limit of 4): 80 tok/s while decoding,
  // not 160 as if all eight had decoded at once.
  for (int s = 4; s < 8; ++s) {
    for (double& t : records[static_cast<size_t>(s)].token_times) t += 10;
    records[static_cast<size_t>(s)].first_token_time += 10;
    records[static_cast<size_t>(s)].end_time += 10;
  }
  EXPECT_NEAR(summarize_serving(records).aggregate_decode_throughput, 80.0, 1e-9);
}

TEST(BenchServingMetrics, AllFailedGivesNoLatencies) {
  RequestRecord failed;
  failed.end_time = 1.0;
  failed.error = "connection refused";
  const ServingMetrics m = summarize_serving(std::vector<RequestRecord>{failed, failed});
  EXPECT_EQ(m.completed, 0);
  EXPECT_EQ(m.failed, 2);
  EXPECT_THAT(m.errors, ElementsAre("connection refused"));
  EXPECT_FALSE(m.ttft_ms.has_value());
  EXPECT_FALSE(m.e2e_ms.has_value());
  EXPECT_EQ(m.output_throughput, 0.0);
}

TEST(BenchServingMetrics, OutOfOrderTimesAreRefused) {
  std::vector<RequestRecord> records = {record(0.5, {0.4}, 0.6, 1)};
  EXPECT_THAT(error_of([&] { summarize_serving(records); }),
              HasSubstr("request 0: first token at 0.400000 s comes before 0.500000 s"));
  EXPECT_THAT(error_of([] { summarize_serving(std::vector<RequestRecord>{}); }),
              HasSubstr("no requests"));
}

}  // namespace
}  // namespace realizar::bench
