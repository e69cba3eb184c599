#include <algorithm>
#include <bit>
#include <cmath>

#include "realizar/error.h"
#include "realizar/sampling.h"

namespace realizar {
namespace {

// splitmix64 (Steele, Lea, Flood 2014): expands the seed into xoshiro's 256-bit state.
uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

void check_params(const SamplingParams& p, int vocab_size) {
  if (vocab_size <= 0) fail("Sampler: vocab_size must be positive, got {}", vocab_size);
  if (!std::isfinite(p.temperature)) fail("Sampler: temperature must be finite, got {}", p.temperature);
  if (!(p.top_p >= 0 && p.top_p <= 1)) fail("Sampler: top_p must be in [0, 1], got {}", p.top_p);
  if (!(p.min_p >= 0 && p.min_p <= 1)) fail("Sampler: min_p must be in [0, 1], got {}", p.min_p);
  if (!(std::isfinite(p.repeat_penalty) && p.repeat_penalty > 0))
    fail("Sampler: repeat_penalty must be positive and finite, got {}", p.repeat_penalty);
  if (!std::isfinite(p.presence_penalty) || !std::isfinite(p.frequency_penalty))
    fail("Sampler: presence/frequency penalties must be finite");
  if (p.penalty_last_n < 0) fail("Sampler: penalty_last_n must be >= 0, got {}", p.penalty_last_n);
}

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

}  // namespace

int32_t greedy_token(std::span<const float> logits) {
  const float max_logit = checked_max_logit(logits);
  return static_cast<int32_t>(std::find(logits.begin(), logits.end(), max_logit) - logits.begin());
}

bool SamplingParams::is_plain_greedy() const {
  return temperature <= 0 && (penalty_last_n == 0 || (repeat_penalty == 1 && presence_penalty == 0 && frequency_penalty == 0));
}

Sampler::Sampler(SamplingParams params, int vocab_size) : params_(params), vocab_size_(vocab_size) {
  check_params(params_, vocab_size_);
  history_.reserve(params_.penalty_last_n);
  window_scratch_.reserve(params_.penalty_last_n);
  penalized_.resize(vocab_size_);
  candidates_.reserve(vocab_size_);
  weights_.reserve(vocab_size_);
  reset();
}

void Sampler::reset() {
  history_.clear();
  history_next_ = 0;
  uint64_t seed_state = params_.seed;
  for (uint64_t& word : rng_state_) word = splitmix64(seed_state);
}

// xoshiro256** 1.0 (Blackman and Vigna 2018).
uint64_t Sampler::next_random() {
  uint64_t* s = rng_state_;
  const uint64_t result = std::rotl(s[1] * 5, 7) * 9;
  const uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = std::rotl(s[3], 45);
  return result;
}

// Uniform in [0, 1) with 53 random bits: exact in a double, same on every platform.
double Sampler::uniform01() { return static_cast<double>(next_random() >> 11) * 0x1.0p-53; }

void Sampler::accept(int32_t token) {
  if (token < 0 || token >= vocab_size_) fail("Sampler::accept: token {} outside vocabulary of {}", token, vocab_size_);
  if (params_.penalty_last_n == 0) return;
  if (history_.size() < static_cast<size_t>(params_.penalty_last_n)) {
    history_.push_back(token);
  } else {
    history_[history_next_] = token;
    history_next_ = (history_next_ + 1) % history_.size();
  }
}

void Sampler::apply_penalties(std::span<const float> logits, std::span<float> out) {
  if (logits.size() != static_cast<size_t>(vocab_size_) || out.size() != logits.size())
    fail("Sampler: expected {} logits, got {} (output {})", vocab_size_, logits.size(), out.size());
  std::copy(logits.begin(), logits.end(), out.begin());
  // Sorting a copy of the window groups equal tokens: one run per distinct token, run length = count.
  window_scratch_.assign(history_.begin(), history_.end());
  std::sort(window_scratch_.begin(), window_scratch_.end());
  for (auto run = window_scratch_.begin(); run != window_scratch_.end();) {
    const auto run_end = std::upper_bound(run, window_scratch_.end(), *run);
    const auto count = static_cast<float>(run_end - run);
    float& logit = out[*run];
    logit = logit <= 0 ? logit * params_.repeat_penalty : logit / params_.repeat_penalty;
    logit -= count * params_.frequency_penalty + params_.presence_penalty;
    run = run_end;
  }
}

// Equivalent to llama.cpp's chain top-k -> top-p -> min-p, arranged to touch the whole vocabulary
// only in a few linear passes: all three keep a prefix of the candidates in ranks_before order, and
// min-p's cut (logit >= max + log(min_p)) does not depend on the others, so tokens below it are
// dropped before sorting. Top-p still normalizes over everything top-k kept, as llama.cpp does.
int32_t Sampler::sample(std::span<const float> logits) {
  apply_penalties(logits, penalized_);
  if (params_.temperature <= 0) return greedy_token(penalized_);
  const float max_logit = checked_max_logit(penalized_);
  const bool top_k_active = params_.top_k > 0 && params_.top_k < vocab_size_;
  const bool top_p_active = params_.top_p < 1;
  const float min_p_floor = params_.min_p > 0 ? max_logit + std::log(params_.min_p) : -INFINITY;
  double top_p_total = 0;  // softmax denominator (relative to max_logit) over the top-k survivors
  if (top_k_active) {
    keep_top_k(max_logit);
    if (top_p_active) top_p_total = sum_of_exp(candidates_, max_logit);
    std::erase_if(candidates_, [&](const Candidate& c) { return c.logit < min_p_floor; });
  } else {
    if (top_p_active) top_p_total = sum_of_exp(penalized_, max_logit);
    collect_at_least(min_p_floor);
    sorted_count_ = 0;
  }
  if (top_p_active) keep_top_p(max_logit, top_p_total);
  return draw(max_logit);
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
void Sampler::keep_top_k(float max_logit) {
  const size_t k = static_cast<size_t>(params_.top_k);
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
void Sampler::keep_top_p(float max_logit, double total) {
  const double target = params_.top_p * total;
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

// softmax(logit / temperature) over the survivors, then inverse-CDF sampling with one uniform draw.
int32_t Sampler::draw(float max_logit) {
  weights_.resize(candidates_.size());
  const float inverse_temperature = 1.0f / params_.temperature;
  double total = 0;
  for (size_t i = 0; i < candidates_.size(); ++i) {
    weights_[i] = std::exp((candidates_[i].logit - max_logit) * inverse_temperature);
    total += weights_[i];
  }
  const double threshold = uniform01() * total;
  double cumulative = 0;
  for (size_t i = 0; i < candidates_.size(); ++i) {
    cumulative += weights_[i];
    if (threshold < cumulative) return candidates_[i].id;
  }
  return candidates_.back().id;  // only reached through rounding when threshold ~ total
}

}  // namespace realizar
