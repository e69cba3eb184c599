#include <algorithm>
#include <cmath>

#include "realizar/error.h"
#include "realizar/sampling.h"
#include "sampling/philox.h"

namespace realizar {
namespace {

// The largest logit; throws when one is NaN or all are -inf.
float checked_max_logit(std::span<const float> logits) {
  float max_logit = -INFINITY;
  bool has_nan = false;
  for (const float logit : logits) {
    has_nan |= std::isnan(logit);
    max_logit = std::max(max_logit, logit);
  }
  if (has_nan) {
    const auto nan = std::find_if(logits.begin(), logits.end(), [](float x) { return std::isnan(x); });
    fail("Sampler: logit of token {} is NaN", nan - logits.begin());
  }
  if (max_logit == -INFINITY) fail("Sampler: every logit is -inf, nothing can be sampled");
  return max_logit;
}

// log sum exp(logits), computed around the largest logit.
double log_sum_exp(std::span<const float> logits) {
  const float max_logit = checked_max_logit(logits);
  double total = 0;
  for (const float logit : logits) total += std::exp(static_cast<double>(logit) - max_logit);
  return max_logit + std::log(total);
}

}  // namespace

void check_sampling_params(const SamplingParams& p) {
  if (!std::isfinite(p.temperature) || p.temperature < 0)
    fail("temperature must be a finite number of at least 0, got {}", p.temperature);
  if (!(p.top_p >= 0 && p.top_p <= 1)) fail("top_p must be in [0, 1], got {}", p.top_p);
  if (!(p.min_p >= 0 && p.min_p <= 1)) fail("min_p must be in [0, 1], got {}", p.min_p);
  if (!(std::isfinite(p.repeat_penalty) && p.repeat_penalty > 0))
    fail("repeat_penalty must be positive and finite, got {}", p.repeat_penalty);
  if (!std::isfinite(p.presence_penalty)) fail("presence_penalty must be finite, got {}", p.presence_penalty);
  if (!std::isfinite(p.frequency_penalty)) fail("frequency_penalty must be finite, got {}", p.frequency_penalty);
  if (p.penalty_last_n < 0) fail("penalty_last_n must be at least 0, got {}", p.penalty_last_n);
}

int32_t greedy_token(std::span<const float> logits) {
  const float max_logit = checked_max_logit(logits);
  return static_cast<int32_t>(std::find(logits.begin(), logits.end(), max_logit) - logits.begin());
}

bool SamplingParams::has_penalties() const {
  return penalty_last_n > 0 && (repeat_penalty != 1 || presence_penalty != 0 || frequency_penalty != 0);
}

bool SamplingParams::is_plain_greedy() const { return temperature <= 0 && !has_penalties(); }

float token_logprob(std::span<const float> logits, int32_t token) {
  if (token < 0 || static_cast<size_t>(token) >= logits.size())
    fail("token_logprob: token {} outside vocabulary of {}", token, logits.size());
  return static_cast<float>(logits[static_cast<size_t>(token)] - log_sum_exp(logits));
}

void top_logprobs(std::span<const float> logits, int n, std::vector<TokenLogprob>& out) {
  const double lse = log_sum_exp(logits);
  const size_t count = std::min(static_cast<size_t>(std::max(n, 0)), logits.size());
  std::vector<int32_t> ids(logits.size());
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(i);
  const auto before = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  std::partial_sort(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(count), ids.end(), before);
  out.clear();
  for (size_t i = 0; i < count; ++i) out.push_back({ids[i], static_cast<float>(logits[ids[i]] - lse)});
}

Sampler::Sampler(int vocab_size) : vocab_size_(vocab_size) {
  if (vocab_size <= 0) fail("Sampler: vocab_size must be positive, got {}", vocab_size);
  penalized_.resize(vocab_size_);
  candidates_.reserve(vocab_size_);
  weights_.reserve(vocab_size_);
}

void Sampler::apply_penalties(std::span<const float> logits, const SamplingParams& params,
                              std::span<const int32_t> history, std::span<float> out) {
  if (logits.size() != static_cast<size_t>(vocab_size_) || out.size() != logits.size())
    fail("Sampler: expected {} logits, got {} (output {})", vocab_size_, logits.size(), out.size());
  std::copy(logits.begin(), logits.end(), out.begin());
  if (!params.has_penalties()) return;
  const size_t window = std::min(history.size(), static_cast<size_t>(params.penalty_last_n));
  // Sorting a copy of the window groups equal tokens: one run per distinct token, run length = count.
  window_scratch_.assign(history.end() - static_cast<std::ptrdiff_t>(window), history.end());
  std::sort(window_scratch_.begin(), window_scratch_.end());
  for (auto run = window_scratch_.begin(); run != window_scratch_.end();) {
    if (*run < 0 || *run >= vocab_size_) fail("Sampler: token {} outside vocabulary of {}", *run, vocab_size_);
    const auto run_end = std::upper_bound(run, window_scratch_.end(), *run);
    const auto count = static_cast<float>(run_end - run);
    float& logit = out[*run];
    logit = logit <= 0 ? logit * params.repeat_penalty : logit / params.repeat_penalty;
    logit -= count * params.frequency_penalty + params.presence_penalty;
    run = run_end;
  }
}

// Equivalent to llama.cpp's chain top-k -> top-p -> min-p, arranged to touch the whole vocabulary
// only in a few linear passes: all three keep a prefix of the candidates in ranks_before order, and
// min-p's cut (logit >= max + log(min_p)) does not depend on the others, so tokens below it are
// dropped before sorting. Top-p still normalizes over everything top-k kept, as llama.cpp does.
float Sampler::filter(std::span<const float> logits, const SamplingParams& params,
                      std::span<const int32_t> history) {
  check_sampling_params(params);
  apply_penalties(logits, params, history, penalized_);
  const float max_logit = checked_max_logit(penalized_);
  if (params.temperature <= 0) {
    const int32_t id = greedy_token(penalized_);
    candidates_.assign(1, Candidate{id, penalized_[id]});
    sorted_count_ = 1;
    return max_logit;
  }
  const bool top_k_active = params.top_k > 0 && params.top_k < vocab_size_;
  const bool top_p_active = params.top_p < 1;
  const float min_p_floor = params.min_p > 0 ? max_logit + std::log(params.min_p) : -INFINITY;
  double top_p_total = 0;  // softmax denominator (relative to max_logit) over the top-k survivors
  if (top_k_active) {
    keep_top_k(params.top_k, max_logit);
    if (top_p_active) top_p_total = sum_of_exp(candidates_, max_logit);
    std::erase_if(candidates_, [&](const Candidate& c) { return c.logit < min_p_floor; });
  } else {
    if (top_p_active) top_p_total = sum_of_exp(penalized_, max_logit);
    collect_at_least(min_p_floor);
    sorted_count_ = 0;
  }
  if (top_p_active) keep_top_p(params.top_p, max_logit, top_p_total);
  return max_logit;
}

int32_t Sampler::sample(std::span<const float> logits, const SamplingParams& params,
                        std::span<const int32_t> history, int64_t position, uint32_t draw_index) {
  const float max_logit = filter(logits, params, history);
  if (params.temperature <= 0) return candidates_.front().id;
  return draw(params.temperature, max_logit, sampling_uniform(params.seed, position, draw_index));
}

std::span<const int32_t> Sampler::survivors(std::span<const float> logits, const SamplingParams& params,
                                            std::span<const int32_t> history) {
  filter(logits, params, history);
  survivor_ids_.clear();
  for (const Candidate& c : candidates_) survivor_ids_.push_back(c.id);
  return survivor_ids_;
}

// candidates_ = every token whose logit is >= threshold, in id order.
void Sampler::collect_at_least(float threshold) {
  candidates_.clear();
  for (int32_t id = 0; id < vocab_size_; ++id) {
    if (penalized_[id] >= threshold) candidates_.push_back({id, penalized_[id]});
  }
}

// Candidate order: larger logit first, then lower id; a strict total order, so partial sorts and
// nth_element give the same result with any standard library.
bool Sampler::ranks_before(const Candidate& a, const Candidate& b) {
  return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

// Collects the tokens within a margin of the maximum, widening it until at least k are in, then
// selects the k best among them: cheaper than nth_element over the whole vocabulary.
void Sampler::keep_top_k(int top_k, float max_logit) {
  const size_t k = static_cast<size_t>(top_k);
  for (float margin : {8.0f, 16.0f, 32.0f, 64.0f, INFINITY}) {
    collect_at_least(max_logit - margin);
    if (candidates_.size() >= k) break;
  }
  std::nth_element(candidates_.begin(), candidates_.begin() + k, candidates_.end(), ranks_before);
  candidates_.resize(k);
  std::sort(candidates_.begin(), candidates_.end(), ranks_before);
  sorted_count_ = k;
}

double Sampler::sum_of_exp(std::span<const float> logits, float max_logit) {
  double total = 0;
  for (const float logit : logits) total += std::exp(logit - max_logit);
  return total;
}

double Sampler::sum_of_exp(std::span<const Candidate> candidates, float max_logit) {
  double total = 0;
  for (const Candidate& c : candidates) total += std::exp(c.logit - max_logit);
  return total;
}

// Keeps the shortest prefix (in ranks_before order) whose probability, relative to `total`, reaches
// top_p. The sorted prefix grows by partial sorts (64, 256, ... entries), so a peaked distribution
// over 150k tokens never needs a full sort.
void Sampler::keep_top_p(float top_p, float max_logit, double total) {
  const double target = top_p * total;
  double cumulative = 0;
  size_t kept = 0;
  while (kept < candidates_.size() && (kept == 0 || cumulative < target)) {
    if (kept == sorted_count_) {
      const size_t grow_to = std::min(candidates_.size(), std::max<size_t>(64, sorted_count_ * 4));
      sort_prefix(grow_to);
    }
    cumulative += std::exp(candidates_[kept].logit - max_logit);
    ++kept;
  }
  candidates_.resize(kept);
  sorted_count_ = kept;
}

// Extends the sorted prefix of candidates_ to `length` entries. A heap selection (partial_sort) is
// fastest while the new part is small next to what is left; nth_element + sort beyond that.
void Sampler::sort_prefix(size_t length) {
  const auto first = candidates_.begin() + sorted_count_;
  const auto last = candidates_.begin() + length;
  if ((length - sorted_count_) * 16 < candidates_.size() - sorted_count_) {
    std::partial_sort(first, last, candidates_.end(), ranks_before);
  } else {
    std::nth_element(first, last - 1, candidates_.end(), ranks_before);
    std::sort(first, last, ranks_before);
  }
  sorted_count_ = length;
}

// softmax(logit / temperature) over the survivors, then inverse-CDF sampling with `uniform`, walking
// the survivors in the order the filters leave them (rank order once top-k or top-p ran).
int32_t Sampler::draw(float temperature, float max_logit, double uniform) {
  weights_.resize(candidates_.size());
  const float inverse_temperature = 1.0f / temperature;
  double total = 0;
  for (size_t i = 0; i < candidates_.size(); ++i) {
    weights_[i] = std::exp((candidates_[i].logit - max_logit) * inverse_temperature);
    total += weights_[i];
  }
  const double threshold = uniform * total;
  double cumulative = 0;
  for (size_t i = 0; i < candidates_.size(); ++i) {
    cumulative += weights_[i];
    if (threshold < cumulative) return candidates_[i].id;
  }
  return candidates_.back().id;  // only reached through rounding when threshold ~ total
}

}  // namespace realizar
