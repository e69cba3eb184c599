// Error-minimising scale searches for the K-quant quantizers (the idea of ggml's make_qkx2_quants
// and make_qx_quants): try a grid of candidate inverse scales around the one that maps the value
// range onto the integer range, round every value with each, fit the best scale (and min) to
// those integers by weighted least squares, and keep the candidate with the least weighted squared
// error. All candidates are evaluated in one pass over the values, and each candidate's error is
// computed in closed form from weighted sums.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>

namespace realizar::scale_search {

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

// Candidates are evaluated side by side: arrays of `padded(count)` lanes, a multiple of 8 so the
// per-element loop over candidates vectorises; padding lanes repeat candidate 0.
constexpr int padded(int count) { return (count + 7) / 8 * 8; }

// Weighted fit of x ≈ scale * q + min over n values, q in [0, nmax], min <= 0 (K-quants store
// -min as an unsigned 6-bit multiple of dmin). Candidate 0 maps [min(x, 0), max(x)] onto
// [0, nmax]; the grid adds grid.count more.
template <int n, Grid grid>
ScaleMin fit_scale_min(const float* x, const float* w, int nmax) {
  constexpr int lanes = padded(grid.count + 1);
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

  const float fmax = static_cast<float>(nmax);
  const float range = hi - lo;
  float iscale[lanes];
  for (int c = 0; c < lanes; ++c) {
    const bool on_grid = c >= 1 && c <= grid.count;
    iscale[c] = (on_grid ? fmax + grid.first + grid.step * static_cast<float>(c - 1) : fmax) / range;
  }
  // Weighted sums of l, l^2 and x*l per candidate, l = round(iscale * (x - lo)) clamped.
  float sum_l[lanes] = {}, sum_l2[lanes] = {}, sum_xl[lanes] = {};
  for (int i = 0; i < n; ++i) {
    const float shifted = x[i] - lo, wi = w[i], wxi = w[i] * x[i];
    for (int c = 0; c < lanes; ++c) {
      const float l = std::min(std::max(std::nearbyint(iscale[c] * shifted), 0.0f), fmax);
      sum_l[c] += wi * l;
      sum_l2[c] += wi * l * l;
      sum_xl[c] += wxi * l;
    }
  }
  ScaleMin best{range / fmax, lo};
  float best_error = std::numeric_limits<float>::infinity();
  for (int c = 0; c < lanes; ++c) {
    const float det = sum_w * sum_l2[c] - sum_l[c] * sum_l[c];
    if (!(det > 0)) continue;
    float scale = (sum_w * sum_xl[c] - sum_wx * sum_l[c]) / det;
    float min = (sum_l2[c] * sum_wx - sum_l[c] * sum_xl[c]) / det;
    if (min > 0) {  // the constrained optimum lies on min = 0
      min = 0;
      scale = sum_xl[c] / sum_l2[c];
    }
    // sum w (scale*l + min - x)^2, expanded.
    const float error = scale * scale * sum_l2[c] + 2 * scale * min * sum_l[c] -
                        2 * scale * sum_xl[c] + min * min * sum_w - 2 * min * sum_wx + sum_wx2;
    if (error < best_error) {
      best_error = error;
      best = {scale, min};
    }
  }
  return best;
}

// Weighted fit of x ≈ scale * q with q in [-nmax, nmax - 1] over n values; candidates
// iscale = -(nmax + grid.first + grid.step * i) / max where max is the value of largest magnitude
// (which then maps near -nmax, using the longer side of the range). Returns the scale.
template <int n, Grid grid>
float fit_scale_symmetric(const float* x, const float* w, int nmax) {
  constexpr int lanes = padded(grid.count);
  float amax = 0, max = 0;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  }
  if (amax == 0) return 0;

  float iscale[lanes];
  for (int c = 0; c < lanes; ++c) {
    const float offset = c < grid.count ? grid.first + grid.step * static_cast<float>(c) : grid.first;
    iscale[c] = -(static_cast<float>(nmax) + offset) / max;
  }
  const float lo = static_cast<float>(-nmax), hi = static_cast<float>(nmax - 1);
  float sum_l2[lanes] = {}, sum_xl[lanes] = {};
  for (int i = 0; i < n; ++i) {
    const float wi = w[i], wxi = w[i] * x[i];
    for (int c = 0; c < lanes; ++c) {
      const float l = std::min(std::max(std::nearbyint(iscale[c] * x[i]), lo), hi);
      sum_l2[c] += wi * l * l;
      sum_xl[c] += wxi * l;
    }
  }
  // The error is sum wx^2 - (sum wxl)^2 / sum wl^2 at the best scale: maximise the second term.
  float best_scale = -max / static_cast<float>(nmax), best_gain = 0;
  for (int c = 0; c < lanes; ++c) {
    if (sum_l2[c] > 0 && sum_xl[c] * sum_xl[c] > best_gain * sum_l2[c]) {
      best_gain = sum_xl[c] * sum_xl[c] / sum_l2[c];
      best_scale = sum_xl[c] / sum_l2[c];
    }
  }
  return best_scale;
}

}  // namespace realizar::scale_search
