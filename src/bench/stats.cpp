#include "bench/stats.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "realizar/error.h"

namespace realizar::bench {
namespace {

constexpr double kCiLevel = 0.95;
constexpr double kOutlierZ = 3.5;
constexpr double kMadToZ = 0.6745;  // the normal distribution's 75th percentile

std::vector<double> sorted_copy(std::span<const double> samples) {
  if (samples.empty()) fail("bench statistics: no samples");
  std::vector<double> sorted(samples.begin(), samples.end());
  std::sort(sorted.begin(), sorted.end());
  return sorted;
}

double median_of_sorted(const std::vector<double>& sorted) {
  const size_t n = sorted.size();
  return n % 2 == 1 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
}

// P(Bin(n, 1/2) = i), in log space so that large n does not overflow.
double binomial_half_pmf(size_t n, size_t i) {
  return std::exp(std::lgamma(static_cast<double>(n) + 1) - std::lgamma(static_cast<double>(i) + 1) -
                  std::lgamma(static_cast<double>(n - i) + 1) + static_cast<double>(n) * std::log(0.5));
}

Interval median_interval(const std::vector<double>& sorted) {
  const size_t n = sorted.size();
  if (n < 2) return {sorted.front(), sorted.front(), 0.0};
  // Coverage of [x(k), x(n+1-k)] is 1 - 2 P(Bin <= k-1); it falls as k grows.
  double tail = binomial_half_pmf(n, 0);  // P(Bin <= k-1) for k = 1
  size_t best_k = 1;
  double best_level = 1 - 2 * tail;
  for (size_t k = 2; k <= n / 2; ++k) {
    tail += binomial_half_pmf(n, k - 1);
    const double level = 1 - 2 * tail;
    if (level < kCiLevel) break;
    best_k = k;
    best_level = level;
  }
  return {sorted[best_k - 1], sorted[n - best_k], best_level};
}

std::vector<size_t> mad_outliers(std::span<const double> samples, double median) {
  std::vector<double> deviations;
  for (double x : samples) deviations.push_back(std::fabs(x - median));
  std::sort(deviations.begin(), deviations.end());
  const double mad = median_of_sorted(deviations);
  std::vector<size_t> outliers;
  for (size_t i = 0; i < samples.size(); ++i) {
    const double deviation = std::fabs(samples[i] - median);
    const bool outlier = mad > 0 ? kMadToZ * deviation / mad > kOutlierZ : deviation > 0;
    if (outlier) outliers.push_back(i);
  }
  return outliers;
}

}  // namespace

Summary summarize(std::span<const double> samples) {
  const std::vector<double> sorted = sorted_copy(samples);
  const size_t n = sorted.size();
  Summary s;
  s.count = n;
  double sum = 0;
  for (double x : sorted) sum += x;
  s.mean = sum / static_cast<double>(n);
  if (n > 1) {
    double squares = 0;
    for (double x : sorted) squares += (x - s.mean) * (x - s.mean);
    s.stdev = std::sqrt(squares / static_cast<double>(n - 1));
  }
  s.cv = s.mean != 0 ? s.stdev / s.mean : 0.0;
  s.min = sorted.front();
  s.max = sorted.back();
  s.median = median_of_sorted(sorted);
  s.median_ci = median_interval(sorted);
  s.outliers = mad_outliers(samples, s.median);
  return s;
}

double percentile(std::span<const double> samples, double p) {
  if (!(p >= 0 && p <= 100)) fail("bench statistics: percentile {} is not in [0, 100]", p);
  const std::vector<double> sorted = sorted_copy(samples);
  const double rank = p / 100.0 * static_cast<double>(sorted.size() - 1);
  const size_t below = static_cast<size_t>(std::floor(rank));
  const size_t above = std::min(below + 1, sorted.size() - 1);
  return sorted[below] + (rank - static_cast<double>(below)) * (sorted[above] - sorted[below]);
}

Percentiles percentiles(std::span<const double> samples) {
  return {percentile(samples, 50), percentile(samples, 95), percentile(samples, 99)};
}

double cv_of_mean(std::span<const double> samples) {
  if (samples.size() < 2) return std::numeric_limits<double>::infinity();
  const Summary s = summarize(samples);
  return s.cv / std::sqrt(static_cast<double>(samples.size()));
}

bool wants_another_run(std::span<const double> samples, const RepetitionPolicy& policy) {
  const auto done = static_cast<int>(samples.size());
  if (done < policy.repetitions) return true;
  if (policy.cv_target <= 0 || done >= policy.max_repetitions) return false;
  return cv_of_mean(samples) >= policy.cv_target;
}

}  // namespace realizar::bench
