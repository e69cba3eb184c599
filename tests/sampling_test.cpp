#include "realizar/sampling.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "realizar/error.h"
#include "sampling/philox.h"

namespace realizar {
namespace {

using ::testing::HasSubstr;
using ::testing::ThrowsMessage;

SamplingParams no_filters(float temperature = 1.0f) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  return p;
}

std::vector<float> random_logits(int n, uint32_t seed, float scale = 3.0f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> logits(n);
  for (float& x : logits) x = normal(gen);
  return logits;
}

// Independent reference: softmax of logits / temperature in double.
std::vector<double> softmax(const std::vector<float>& logits, double temperature = 1.0) {
  const double max = *std::max_element(logits.begin(), logits.end());
  std::vector<double> p(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) p[i] = std::exp((logits[i] - max) / temperature);
  const double total = std::accumulate(p.begin(), p.end(), 0.0);
  for (double& x : p) x /= total;
  return p;
}

// Many draws at one position (draw indices 0, 1, ...), with no penalty history.
std::vector<int> histogram(const SamplingParams& params, const std::vector<float>& logits, int draws) {
  Sampler sampler(static_cast<int>(logits.size()));
  std::vector<int> counts(logits.size());
  for (int i = 0; i < draws; ++i) counts[sampler.sample(logits, params, {}, 0, static_cast<uint32_t>(i))]++;
  return counts;
}

std::set<int32_t> observed_tokens(const SamplingParams& params, const std::vector<float>& logits, int draws) {
  Sampler sampler(static_cast<int>(logits.size()));
  std::set<int32_t> seen;
  for (int i = 0; i < draws; ++i) seen.insert(sampler.sample(logits, params, {}, 0, static_cast<uint32_t>(i)));
  return seen;
}

// The filters' survivors as a set.
std::set<int32_t> survivor_set(const SamplingParams& params, const std::vector<float>& logits) {
  Sampler sampler(static_cast<int>(logits.size()));
  const std::span<const int32_t> ids = sampler.survivors(logits, params, {});
  return {ids.begin(), ids.end()};
}

std::vector<float> logits_of_probabilities(const std::vector<double>& probabilities) {
  std::vector<float> logits;
  for (double p : probabilities) logits.push_back(static_cast<float>(std::log(p)));
  return logits;
}

TEST(Sampler, GreedyIsArgmaxWithTiesToLowestId) {
  SamplingParams params;
  params.temperature = 0;
  Sampler sampler(1000);
  for (uint32_t seed = 0; seed < 20; ++seed) {
    std::vector<float> logits = random_logits(1000, seed);
    const auto expected = std::max_element(logits.begin(), logits.end()) - logits.begin();
    EXPECT_EQ(sampler.sample(logits, params, {}, seed), expected);
  }
  std::vector<float> tied = {0.5f, 2.0f, -1.0f, 2.0f, 2.0f};
  EXPECT_EQ(Sampler(5).sample(tied, params, {}, 0), 1);
}

TEST(GreedyToken, IsTheLowestIdOfTheLargestLogit) {
  EXPECT_EQ(greedy_token(std::vector<float>{0.5f, 2.0f, -1.0f, 2.0f, 2.0f}), 1);
  EXPECT_EQ(greedy_token(std::vector<float>{-INFINITY, -3.0f, -INFINITY}), 1);
  EXPECT_EQ(greedy_token(std::vector<float>{INFINITY, 1.0f, INFINITY}), 0);
  EXPECT_THAT([] { greedy_token(std::vector<float>{1, 2, NAN}); }, ThrowsMessage<Error>(HasSubstr("token 2 is NaN")));
  EXPECT_THAT([] { greedy_token(std::vector<float>(3, -INFINITY)); }, ThrowsMessage<Error>(HasSubstr("every logit is -inf")));
}

TEST(SamplingParams, PlainGreedyMeansNoTemperatureAndNoActivePenalty) {
  SamplingParams p;
  EXPECT_FALSE(p.is_plain_greedy());  // the defaults sample at temperature 0.8
  p.temperature = 0;
  EXPECT_TRUE(p.is_plain_greedy());
  p.repeat_penalty = 1.1f;
  EXPECT_FALSE(p.is_plain_greedy());
  EXPECT_TRUE(p.has_penalties());
  p.penalty_last_n = 0;  // no window: the penalty never applies
  EXPECT_TRUE(p.is_plain_greedy());
  EXPECT_FALSE(p.has_penalties());
  p.penalty_last_n = 64;
  p.repeat_penalty = 1;
  p.presence_penalty = 0.5f;
  EXPECT_FALSE(p.is_plain_greedy());
  p.presence_penalty = 0;
  p.frequency_penalty = 0.5f;
  EXPECT_FALSE(p.is_plain_greedy());
}

TEST(Sampler, TopKOfOneIsGreedyAtAnyTemperature) {
  Sampler sampler(500);
  for (float temperature : {0.1f, 1.0f, 5.0f, 100.0f}) {
    SamplingParams params;
    params.temperature = temperature;
    params.top_k = 1;
    for (uint32_t seed = 0; seed < 20; ++seed) {
      std::vector<float> logits = random_logits(500, seed);
      logits[seed * 7 + 3] = logits[seed * 7 + 100] = 50.0f;  // a tie at the top
      EXPECT_EQ(sampler.sample(logits, params, {}, seed), static_cast<int32_t>(seed * 7 + 3))
          << "temperature " << temperature;
    }
  }
}

// The draw at a position is a function of (seed, position) alone: the same sequence of positions
// gives the same tokens, in any order of calls and with any other work on the sampler in between.
TEST(Sampler, DrawsAreAFunctionOfSeedAndPosition) {
  const std::vector<float> logits = random_logits(200, 1, 1.0f);
  Sampler sampler(200);
  auto tokens = [&](uint64_t seed, bool reversed) {
    SamplingParams params = no_filters();
    params.seed = seed;
    std::vector<int32_t> out(100);
    for (int i = 0; i < 100; ++i) {
      const int position = reversed ? 99 - i : i;
      sampler.sample(random_logits(200, 99, 1.0f), no_filters(), {}, position);  // unrelated work
      out[position] = sampler.sample(logits, params, {}, position);
    }
    return out;
  };
  EXPECT_EQ(tokens(42, false), tokens(42, true));
  EXPECT_NE(tokens(42, false), tokens(43, false));
}

TEST(SamplingUniform, IsPhiloxOfSeedAndPosition) {
  // Random123's known-answer vectors for Philox4x32-10 (its tests/kat_vectors).
  const Philox4x32 zero = philox4x32_10(Philox4x32{{0, 0, 0, 0}}, 0, 0);
  EXPECT_THAT(zero.v, ::testing::ElementsAre(0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u));
  const Philox4x32 ones = philox4x32_10(Philox4x32{{~0u, ~0u, ~0u, ~0u}}, ~0u, ~0u);
  EXPECT_THAT(ones.v, ::testing::ElementsAre(0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu));
  const Philox4x32 pi = philox4x32_10(Philox4x32{{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}},
                                      0xa4093822u, 0x299f31d0u);
  EXPECT_THAT(pi.v, ::testing::ElementsAre(0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u));
  // The uniform takes the top 53 bits of the first two words of counter (position, draw).
  const Philox4x32 bits = philox4x32_10(Philox4x32{{7, 0, 3, 0}}, 0x89abcdefu, 0x01234567u);
  const uint64_t word = (static_cast<uint64_t>(bits.v[0]) << 32) | bits.v[1];
  EXPECT_EQ(sampling_uniform(0x0123456789abcdefull, 7, 3), static_cast<double>(word >> 11) * 0x1.0p-53);
  // Uniform on [0, 1): mean and variance of many draws.
  double sum = 0, sum_sq = 0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    const double u = sampling_uniform(5, i, 0);
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
    sum_sq += u * u;
  }
  EXPECT_NEAR(sum / n, 0.5, 0.005);
  EXPECT_NEAR(sum_sq / n - (sum / n) * (sum / n), 1.0 / 12, 0.002);
}

// Pearson's chi-square statistic of observed counts against expected probabilities.
double chi_square(const std::vector<int>& counts, const std::vector<double>& probabilities, int draws) {
  double statistic = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    const double expected = probabilities[i] * draws;
    statistic += (counts[i] - expected) * (counts[i] - expected) / expected;
  }
  return statistic;
}

TEST(Sampler, DrawsFollowSoftmaxOfLogitsOverTemperature) {
  const std::vector<float> logits = {1.0f, 0.2f, -0.5f, 2.0f, 0.0f, 1.5f, -1.0f, 0.7f};
  const int draws = 200000;
  for (float temperature : {1.0f, 0.5f, 2.0f}) {
    const std::vector<int> counts = histogram(no_filters(temperature), logits, draws);
    // 7 degrees of freedom: P(chi2 > 29.9) = 1e-4 for a correct sampler; a wrong temperature or an
    // off-by-one in the inverse CDF gives statistics in the thousands.
    EXPECT_LT(chi_square(counts, softmax(logits, temperature), draws), 29.9) << "temperature " << temperature;
  }
}

TEST(Sampler, DrawsOverPositionsFollowTheDistributionToo) {
  // The engine makes one draw per position: those must be as random as draws at one position.
  const std::vector<float> logits = {1.0f, 0.2f, -0.5f, 2.0f, 0.0f, 1.5f, -1.0f, 0.7f};
  const int draws = 200000;
  Sampler sampler(8);
  std::vector<int> counts(8);
  for (int i = 0; i < draws; ++i) counts[sampler.sample(logits, no_filters(), {}, i)]++;
  EXPECT_LT(chi_square(counts, softmax(logits), draws), 29.9);
}

TEST(Sampler, TopKKeepsExactlyTheKLargest) {
  SamplingParams params = no_filters(3.0f);
  params.top_k = 5;
  const std::vector<float> logits = random_logits(100, 3, 1.0f);
  std::vector<int32_t> order(100);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int a, int b) { return logits[a] > logits[b]; });
  const std::set<int32_t> expected(order.begin(), order.begin() + 5);
  EXPECT_EQ(observed_tokens(params, logits, 5000), expected);
  EXPECT_EQ(survivor_set(params, logits), expected);
}

TEST(Sampler, SurvivorsComeInRankOrder) {
  SamplingParams params = no_filters();
  params.top_k = 6;
  std::vector<float> logits = random_logits(300, 8, 1.0f);
  logits[17] = logits[5] = 9.0f;  // a tie: lower id first
  Sampler sampler(300);
  const std::span<const int32_t> ids = sampler.survivors(logits, params, {});
  ASSERT_EQ(ids.size(), 6u);
  EXPECT_EQ(ids[0], 5);
  EXPECT_EQ(ids[1], 17);
  for (size_t i = 2; i < ids.size(); ++i) EXPECT_GE(logits[ids[i - 1]], logits[ids[i]]);
}

TEST(Sampler, TopPKeepsTheSmallestNucleus) {
  // Probabilities in a scrambled order; sorted: 0.4 0.25 0.15 0.1 0.06 0.04.
  const std::vector<double> probabilities = {0.1, 0.4, 0.04, 0.15, 0.25, 0.06};
  const std::vector<float> logits = logits_of_probabilities(probabilities);
  const std::vector<std::pair<float, std::set<int32_t>>> cases = {
      {0.3f, {1}}, {0.6f, {1, 4}}, {0.7f, {1, 4, 3}}, {0.85f, {1, 4, 3, 0}}, {0.99f, {1, 4, 3, 0, 5, 2}}, {0.0f, {1}}};
  for (const auto& [top_p, expected] : cases) {
    SamplingParams params = no_filters(4.0f);
    params.top_p = top_p;
    EXPECT_EQ(observed_tokens(params, logits, 5000), expected) << "top_p " << top_p;
    EXPECT_EQ(survivor_set(params, logits), expected) << "top_p " << top_p;
  }
}

TEST(Sampler, TopPOverALargeVocabularyMatchesAFullSort) {
  // Thousands of survivors force the sorted prefix to grow several times.
  const int vocab = 5000;
  const std::vector<float> logits = random_logits(vocab, 4, 0.5f);
  const std::vector<double> p = softmax(logits);
  std::vector<int32_t> order(vocab);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int a, int b) { return p[a] > p[b]; });
  double cumulative = 0;
  size_t nucleus = 0;
  while (cumulative < 0.2) cumulative += p[order[nucleus++]];
  SamplingParams params = no_filters(1000.0f);  // nearly uniform over the survivors
  params.top_p = 0.2f;
  // 25 draws per survivor: each is missed with probability ~e^-25.
  const std::set<int32_t> seen = observed_tokens(params, logits, 25 * static_cast<int>(nucleus));
  EXPECT_GT(nucleus, 256u);  // the sorted prefix grew twice: 64, 256, 1024
  EXPECT_EQ(seen, std::set<int32_t>(order.begin(), order.begin() + nucleus));
}

TEST(Sampler, MinPKeepsTokensWithinAFactorOfTheMostLikely) {
  const std::vector<double> probabilities = {0.1, 0.4, 0.04, 0.15, 0.25, 0.06};
  const std::vector<float> logits = logits_of_probabilities(probabilities);
  for (float min_p : {0.05f, 0.2f, 0.3f, 0.5f, 0.9f}) {
    std::set<int32_t> expected;
    for (int32_t i = 0; i < 6; ++i) {
      if (probabilities[i] >= min_p * 0.4) expected.insert(i);
    }
    SamplingParams params = no_filters(4.0f);
    params.min_p = min_p;
    EXPECT_EQ(observed_tokens(params, logits, 5000), expected) << "min_p " << min_p;
  }
}

TEST(Sampler, FiltersApplyInLlamaCppOrder) {
  // top-k 4 keeps {1, 4, 3, 0} (p 0.4 0.25 0.15 0.1, renormalized /0.9: .444 .278 .167 .111);
  // top-p 0.75 keeps {1, 4, 3} (cumulative .722 < .75 <= .889); min-p 0.4 then needs p >= .4*.444:
  // keeps {1, 4}. Temperature applies after all filters.
  const std::vector<float> logits = logits_of_probabilities({0.1, 0.4, 0.04, 0.15, 0.25, 0.06});
  SamplingParams params;
  params.temperature = 5.0f;
  params.top_k = 4;
  params.top_p = 0.75f;
  params.min_p = 0.4f;
  EXPECT_EQ(observed_tokens(params, logits, 5000), (std::set<int32_t>{1, 4}));
  params.min_p = 0.3f;
  EXPECT_EQ(observed_tokens(params, logits, 5000), (std::set<int32_t>{1, 4, 3}));
}

// Straightforward reference of llama.cpp's chain: full sort, top-k, softmax + nucleus, min-p.
std::set<int32_t> reference_survivors(const std::vector<float>& logits, const SamplingParams& params) {
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return logits[a] > logits[b]; });
  if (params.top_k > 0 && static_cast<size_t>(params.top_k) < order.size()) order.resize(params.top_k);
  if (params.top_p < 1) {
    std::vector<float> kept_logits;
    for (int32_t id : order) kept_logits.push_back(logits[id]);
    const std::vector<double> p = softmax(kept_logits);
    double cumulative = 0;
    size_t kept = 0;
    while (kept < order.size() && (kept == 0 || cumulative < params.top_p)) cumulative += p[kept++];
    order.resize(kept);
  }
  const double max_logit = logits[order.front()];
  std::erase_if(order, [&](int32_t id) { return std::exp(logits[id] - max_logit) < params.min_p; });
  return {order.begin(), order.end()};
}

TEST(Sampler, FilterChainOverALargeVocabularyMatchesAReference) {
  struct Case {
    int top_k;
    float top_p, min_p, logit_scale;
  };
  // Wide logit scales make top-k reach far below the maximum (the collection margin must widen).
  for (const Case& c : {Case{50, 1.0f, 0.0f, 20.0f}, Case{200, 0.9f, 0.0f, 3.0f}, Case{0, 0.3f, 0.05f, 2.0f},
                        Case{300, 0.95f, 0.02f, 2.0f}, Case{400, 1.0f, 1e-6f, 10.0f}}) {
    const std::vector<float> logits = random_logits(20000, 11, c.logit_scale);
    SamplingParams params = no_filters(1000.0f);
    params.top_k = c.top_k;
    params.top_p = c.top_p;
    params.min_p = c.min_p;
    const std::set<int32_t> expected = reference_survivors(logits, params);
    ASSERT_GT(expected.size(), 1u);
    ASSERT_LT(expected.size(), 1000u) << "case with top_k " << c.top_k;
    EXPECT_EQ(survivor_set(params, logits), expected)
        << "top_k " << c.top_k << " top_p " << c.top_p << " min_p " << c.min_p << " survivors " << expected.size();
    EXPECT_EQ(observed_tokens(params, logits, 25 * static_cast<int>(expected.size())), expected)
        << "top_k " << c.top_k << " top_p " << c.top_p << " min_p " << c.min_p << " survivors " << expected.size();
  }
}

TEST(Sampler, PenaltiesFollowLlamaCpp) {
  SamplingParams params;
  params.repeat_penalty = 2.0f;
  params.frequency_penalty = 0.5f;
  params.presence_penalty = 0.25f;
  params.penalty_last_n = 3;
  Sampler sampler(5);
  const std::vector<int32_t> history = {2, 0, 1, 0};  // window of 3: {0, 1, 0}
  const std::vector<float> logits = {2.0f, -2.0f, 1.0f, 0.0f, 3.0f};
  std::vector<float> out(5);
  sampler.apply_penalties(logits, params, history, out);
  EXPECT_FLOAT_EQ(out[0], 2.0f / 2 - 2 * 0.5f - 0.25f);   // positive: divided; seen twice
  EXPECT_FLOAT_EQ(out[1], -2.0f * 2 - 1 * 0.5f - 0.25f);  // negative: multiplied; seen once
  EXPECT_FLOAT_EQ(out[2], 1.0f);                          // left the window
  EXPECT_FLOAT_EQ(out[3], 0.0f);
  EXPECT_FLOAT_EQ(out[4], 3.0f);
}

TEST(Sampler, PenaltiesSteerGreedySampling) {
  SamplingParams params;
  params.temperature = 0;
  params.repeat_penalty = 1.5f;
  Sampler sampler(3);
  const std::vector<float> logits = {3.0f, 2.5f, 1.0f};
  std::vector<int32_t> history;
  EXPECT_EQ(sampler.sample(logits, params, history, 0), 0);
  history.push_back(0);  // 3 / 1.5 = 2 < 2.5
  EXPECT_EQ(sampler.sample(logits, params, history, 1), 1);
  history.push_back(1);  // 2.5 / 1.5 = 1.67 < 2
  EXPECT_EQ(sampler.sample(logits, params, history, 2), 0);
}

TEST(Logprobs, AreTheLogSoftmaxOfTheRawLogits) {
  const std::vector<float> logits = {1.0f, 3.0f, -2.0f, 3.0f, 0.5f};
  const std::vector<double> p = softmax(logits);
  for (int32_t t = 0; t < 5; ++t) EXPECT_NEAR(token_logprob(logits, t), std::log(p[t]), 1e-6);
  std::vector<TokenLogprob> top;
  top_logprobs(logits, 3, top);
  ASSERT_EQ(top.size(), 3u);
  EXPECT_EQ(top[0].token, 1);  // tie with 3: lower id first
  EXPECT_EQ(top[1].token, 3);
  EXPECT_EQ(top[2].token, 0);
  EXPECT_NEAR(top[2].logprob, std::log(p[0]), 1e-6);
  top_logprobs(logits, 10, top);
  EXPECT_EQ(top.size(), 5u);
  EXPECT_THAT([&] { token_logprob(logits, 5); }, ThrowsMessage<Error>(HasSubstr("token 5 outside")));
}

TEST(Sampler, RejectsBadInput) {
  Sampler sampler(4);
  const SamplingParams defaults;
  EXPECT_THAT([&] { sampler.sample(std::vector<float>(3), defaults, {}, 0); },
              ThrowsMessage<Error>(HasSubstr("expected 4 logits, got 3")));
  EXPECT_THAT([&] { sampler.sample(std::vector<float>{0, NAN, 0, 0}, defaults, {}, 0); },
              ThrowsMessage<Error>(HasSubstr("token 1 is NaN")));
  EXPECT_THAT([&] { sampler.sample(std::vector<float>(4, -INFINITY), defaults, {}, 0); },
              ThrowsMessage<Error>(HasSubstr("every logit is -inf")));
  SamplingParams penalized;
  penalized.repeat_penalty = 1.2f;
  EXPECT_THAT([&] { sampler.sample(std::vector<float>(4), penalized, std::vector<int32_t>{4}, 1); },
              ThrowsMessage<Error>(HasSubstr("token 4 outside vocabulary")));
  SamplingParams bad;
  bad.top_p = 1.5f;
  EXPECT_THAT([&] { sampler.sample(std::vector<float>(4), bad, {}, 0); },
              ThrowsMessage<Error>(HasSubstr("top_p must be in [0, 1]")));
  bad = SamplingParams{};
  bad.temperature = -0.5f;
  EXPECT_THAT([&] { check_sampling_params(bad); }, ThrowsMessage<Error>(HasSubstr("temperature must be")));
  EXPECT_THAT([&] { Sampler(0); }, ThrowsMessage<Error>(HasSubstr("vocab_size must be positive")));
}

// ---- StopMatcher -------------------------------------------------------------------------------

std::vector<std::string> feed_all(StopMatcher& matcher, const std::vector<std::string>& pieces) {
  std::vector<std::string> out;
  for (const std::string& piece : pieces) out.push_back(matcher.feed(piece).text);
  return out;
}

TEST(StopMatcher, StopStringAcrossPieceBoundaries) {
  StopMatcher matcher({"</s>"});
  EXPECT_EQ(feed_all(matcher, {"Hel", "lo</", "s>rest"}), (std::vector<std::string>{"Hel", "lo", ""}));
  EXPECT_TRUE(matcher.stopped());
  EXPECT_EQ(matcher.feed("more").text, "");
  EXPECT_TRUE(matcher.feed("more").stopped);
  EXPECT_EQ(matcher.flush(), "");
}

TEST(StopMatcher, FalseStartIsReleasedWhenItStopsMatching) {
  StopMatcher matcher({"</s>"});
  EXPECT_EQ(feed_all(matcher, {"a<", "/", "b>c"}), (std::vector<std::string>{"a", "", "</b>c"}));
  EXPECT_FALSE(matcher.stopped());
}

TEST(StopMatcher, HeldTextIsFlushedAtTheEnd) {
  StopMatcher matcher({"User:"});
  EXPECT_EQ(matcher.feed("done. Us").text, "done. ");
  EXPECT_EQ(matcher.flush(), "Us");
}

TEST(StopMatcher, EarliestOfSeveralStopStringsWins) {
  StopMatcher matcher({"User:", "\n\n"});
  const StopMatcher::Result result = matcher.feed("answer\n\nUser: hi");
  EXPECT_EQ(result.text, "answer");
  EXPECT_TRUE(result.stopped);
}

TEST(StopMatcher, OverlappingPrefixes) {
  StopMatcher matcher({"aab"});
  EXPECT_EQ(feed_all(matcher, {"a", "a", "a", "b", "x"}), (std::vector<std::string>{"", "", "a", "", ""}));
  EXPECT_TRUE(matcher.stopped());
  StopMatcher nested({"abab", "bx"});
  EXPECT_EQ(feed_all(nested, {"ab", "a", "bx"}), (std::vector<std::string>{"", "", ""}));  // "abab" at 0
}

TEST(StopMatcher, MatchesAReferenceOnRandomStreams) {
  std::mt19937 gen(7);
  auto random_text = [&](int length) {
    std::string s;
    for (int i = 0; i < length; ++i) s += "ab\n"[gen() % 3];
    return s;
  };
  for (int trial = 0; trial < 2000; ++trial) {
    const std::vector<std::string> stops = {random_text(1 + gen() % 4), random_text(1 + gen() % 4)};
    const std::string text = random_text(gen() % 20);
    // Reference: after each piece, look for the earliest stop string in all the text so far; the
    // first piece that completes one cuts the output at that stop's start.
    auto earliest_stop = [&](const std::string& seen) {
      size_t first = std::string::npos;
      for (const std::string& stop : stops) first = std::min(first, seen.find(stop));
      return first;
    };
    StopMatcher matcher(stops);
    std::string emitted, expected;
    size_t first = std::string::npos;
    for (size_t pos = 0; pos < text.size() && first == std::string::npos;) {
      const size_t length = std::min<size_t>(1 + gen() % 4, text.size() - pos);
      emitted += matcher.feed(text.substr(pos, length)).text;
      pos += length;
      first = earliest_stop(text.substr(0, pos));
    }
    expected = text.substr(0, first);
    emitted += matcher.flush();
    ASSERT_EQ(emitted, expected) << "text '" << text << "' stops '" << stops[0] << "' '" << stops[1] << "'";
    EXPECT_EQ(matcher.stopped(), first != std::string::npos);
  }
}

}  // namespace
}  // namespace realizar
