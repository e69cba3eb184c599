// Error-minimising scale searches for the K-quant quantizers (the idea of ggml's make_qkx2_quants
// and make_qx_quants): try a grid of candidate inverse scales around the one that maps the value
// range onto the integer range, round every value with each, fit the best scale (and min) to
// those integers by weighted least squares, and keep the candidate with the least weighted squared
// error. The error is computed in closed form from sums, so each candidate costs one pass.
// Loops accumulate into 8 independent lanes so the compiler can vectorise them without reordering
// float sums.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>

namespace realizar::scale_search {

constexpr int kLanes = 8;

// Candidate inverse scales: (nmax + first + step * i) / range for i in 0..count-1.
struct Grid {
  float first;
  float step;
  int count;
};

// x ≈ scale * q + min with q in [0, nmax].
struct ScaleMin {
  float scale;
  float min;
};

// Weighted fit of x ≈ scale * q + min over n values (n a multiple of kLanes), q in [0, nmax],
// min <= 0 (K-quants store -min as an unsigned 6-bit multiple of dmin).
template <int n>
ScaleMin fit_scale_min(const float* x, const float* w, int nmax, Grid grid) {
  static_assert(n % kLanes == 0);
  float lo = x[0], hi = x[0];
  float sum_w = 0, sum_wx = 0, sum_wx2 = 0;
  for (int i = 0; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
    sum_w += w[i];
    sum_wx += w[i] * x[i];
    sum_wx2 += w[i] * x[i] * x[i];
  }
  lo = std::min(lo, 0.0f);
  if (!(hi > lo)) return {0.0f, lo};

  ScaleMin best{(hi - lo) / static_cast<float>(nmax), lo};
  float best_error = std::numeric_limits<float>::infinity();
  const float fmax = static_cast<float>(nmax);
  auto try_inverse_scale = [&](float iscale) {
    float lane_l[kLanes] = {}, lane_l2[kLanes] = {}, lane_xl[kLanes] = {};
    for (int i = 0; i < n; i += kLanes) {
      for (int k = 0; k < kLanes; ++k) {
        const float l = std::clamp(std::nearbyint(iscale * (x[i + k] - lo)), 0.0f, fmax);
        const float wl = w[i + k] * l;
        lane_l[k] += wl;
        lane_l2[k] += wl * l;
        lane_xl[k] += wl * x[i + k];
      }
    }
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int k = 0; k < kLanes; ++k) {
      sum_l += lane_l[k];
      sum_l2 += lane_l2[k];
      sum_xl += lane_xl[k];
    }
    const float det = sum_w * sum_l2 - sum_l * sum_l;
    if (!(det > 0)) return;
    float scale = (sum_w * sum_xl - sum_wx * sum_l) / det;
    float min = (sum_l2 * sum_wx - sum_l * sum_xl) / det;
    if (min > 0) {  // the constrained optimum lies on min = 0
      min = 0;
      scale = sum_xl / sum_l2;
    }
    // sum w (scale*l + min - x)^2, expanded.
    const float error = scale * scale * sum_l2 + 2 * scale * min * sum_l - 2 * scale * sum_xl +
                        min * min * sum_w - 2 * min * sum_wx + sum_wx2;
    if (error < best_error) {
      best_error = error;
      best = {scale, min};
    }
  };
  const float range = hi - lo;
  try_inverse_scale(fmax / range);
  for (int i = 0; i < grid.count; ++i) {
    try_inverse_scale((fmax + grid.first + grid.step * static_cast<float>(i)) / range);
  }
  return best;
}

// Weighted fit of x ≈ scale * q with q in [-nmax, nmax - 1] over n values; returns scale, whose
// sign follows the value of largest magnitude (which then maps to -nmax, using the longer side).
template <int n>
float fit_scale_symmetric(const float* x, const float* w, int nmax, Grid grid) {
  static_assert(n % kLanes == 0);
  float amax = 0, max = 0;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  }
  if (amax == 0) return 0;

  float best_scale = -max / static_cast<float>(nmax);
  float best_gain = 0;  // (sum wxl)^2 / sum wl^2: the error is sum wx^2 minus this
  const float lo = static_cast<float>(-nmax), hi = static_cast<float>(nmax - 1);
  for (int c = 0; c < grid.count; ++c) {
    const float iscale = -(static_cast<float>(nmax) + grid.first + grid.step * static_cast<float>(c)) / max;
    float lane_l2[kLanes] = {}, lane_xl[kLanes] = {};
    for (int i = 0; i < n; i += kLanes) {
      for (int k = 0; k < kLanes; ++k) {
        const float l = std::clamp(std::nearbyint(iscale * x[i + k]), lo, hi);
        const float wl = w[i + k] * l;
        lane_l2[k] += wl * l;
        lane_xl[k] += wl * x[i + k];
      }
    }
    float sum_l2 = 0, sum_xl = 0;
    for (int k = 0; k < kLanes; ++k) {
      sum_l2 += lane_l2[k];
      sum_xl += lane_xl[k];
    }
    if (sum_l2 > 0 && sum_xl * sum_xl > best_gain * sum_l2) {
      best_gain = sum_xl * sum_xl / sum_l2;
      best_scale = sum_xl / sum_l2;
    }
  }
  return best_scale;
}

}  // namespace realizar::scale_search
