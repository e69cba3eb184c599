// Statistics of repeated measurements, as Hoefler & Belli ("Scientific benchmarking of parallel
// computing systems", SC'15) and Georges, Buytaert & Eeckhout ("Statistically rigorous Java
// performance evaluation", OOPSLA'07) ask for: centre and spread, a non-parametric confidence
// interval of the median, outliers flagged (never dropped), and a stopping rule on the
// coefficient of variation of the mean.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

namespace realizar::bench {

// [low, high] holds the quantity with probability `level` (0 when no interval can be given).
struct Interval {
  double low = 0;
  double high = 0;
  double level = 0;
};

struct Summary {
  size_t count = 0;
  double mean = 0;
  double median = 0;
  double stdev = 0;  // sample standard deviation (n - 1 in the denominator); 0 for one sample
  double cv = 0;     // stdev / mean
  double min = 0;
  double max = 0;
  // Distribution-free interval of the median from order statistics: [x(k), x(n+1-k)] with the
  // largest k whose binomial coverage 1 - 2 P(Bin(n, 1/2) <= k-1) is at least 95% (Le Boudec,
  // "Performance Evaluation of Computer and Communication Systems", 2010, §2.2). Below 6 samples
  // no such k exists: the interval is [min, max] and `level` its actual coverage (93.75% for 5
  // samples, 87.5% for 4, ...; 0 for one sample).
  Interval median_ci;
  // Indices (in measurement order) of samples whose modified z-score 0.6745 |x - median| / MAD
  // exceeds 3.5 (Iglewicz & Hoaglin, "How to Detect and Handle Outliers", 1993). With MAD = 0
  // every sample unequal to the median is flagged.
  std::vector<size_t> outliers;
};

// Throws realizar::Error for an empty sample.
Summary summarize(std::span<const double> samples);

// The p-th percentile (0 <= p <= 100) by linear interpolation between closest ranks (Hyndman &
// Fan type 7, numpy's and Excel's default). Throws realizar::Error for an empty sample.
double percentile(std::span<const double> samples, double p);

struct Percentiles {
  double p50 = 0;
  double p95 = 0;
  double p99 = 0;
};
Percentiles percentiles(std::span<const double> samples);

// Coefficient of variation of the mean, stdev / (mean * sqrt(n)): the relative standard error.
// Infinite for fewer than two samples.
double cv_of_mean(std::span<const double> samples);

// How many runs a measurement gets. Warm-up runs are made and discarded; then `repetitions`
// runs, or with cv_target > 0 at least `repetitions` and more until the coefficient of variation
// of the mean drops below cv_target, at most max_repetitions.
struct RepetitionPolicy {
  int warmup = 1;
  int repetitions = 5;
  double cv_target = 0;
  int max_repetitions = 50;
};

// Whether the policy asks for another measured run after `samples`.
bool wants_another_run(std::span<const double> samples, const RepetitionPolicy& policy);

}  // namespace realizar::bench
