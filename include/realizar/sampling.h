// Token sampling from logits, and stop-string matching on the generated text.
//
// The sampling chain follows llama.cpp's default sampler chain (common/sampling.cpp,
// src/llama-sampling.cpp): penalties -> top-k -> top-p -> min-p -> temperature -> softmax -> draw.
// Like llama.cpp, the filters look at the penalized logits at temperature 1; temperature only
// reshapes the distribution among the tokens that survive them.
//   - repeat penalty (CTRL, Keskar et al. 2019, as llama.cpp applies it): a token seen in the last
//     penalty_last_n accepted tokens has a positive logit divided by repeat_penalty, a negative
//     one multiplied by it;
//   - presence / frequency penalties (OpenAI API definition): logit -= count * frequency_penalty
//     + (count > 0) * presence_penalty, count = occurrences in that window;
//   - top-k (Fan et al. 2018): keep the k largest logits;
//   - top-p / nucleus (Holtzman et al. 2019): keep the smallest prefix of the candidates sorted by
//     probability whose cumulative probability is >= top_p (at least one token);
//   - min-p (Nguyen et al. 2024): keep tokens with p >= min_p * p_max;
//   - temperature: logits / temperature, then softmax and one draw.
// Candidates are ordered by logit descending, ties by lower token id, so every step is
// deterministic. Random numbers come from our own xoshiro256** generator (seeded by splitmix64)
// and a 53-bit uniform double, not std:: distributions, so a seed gives the same random stream on
// every platform (tokens too, unless a libm's expf differs in the last bit at a draw boundary).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace realizar {

// Defaults are llama.cpp's (common/common.h, common_params_sampling), except the seed: llama.cpp's
// default means "pick a random seed", ours is a fixed value so that runs reproduce by default.
struct SamplingParams {
  float temperature = 0.8f;       // <= 0: greedy (argmax of the penalized logits)
  int top_k = 40;                 // <= 0 or >= vocab: off
  float top_p = 0.95f;            // >= 1: off
  float min_p = 0.05f;            // <= 0: off
  float repeat_penalty = 1.0f;    // 1: off
  float presence_penalty = 0.0f;  // 0: off
  float frequency_penalty = 0.0f; // 0: off
  int penalty_last_n = 64;        // window of accepted tokens the penalties look at; 0: off
  uint64_t seed = 0x5EED;

  // Greedy with no penalty that could change the arg max: the token is the largest raw logit, so
  // a backend can pick it without handing back the logits (Backend::forward_greedy).
  bool is_plain_greedy() const;
};

// Greedy decoding: the id of the largest logit, the lowest among equal ones. Throws
// realizar::Error when a logit is NaN or every logit is -inf.
int32_t greedy_token(std::span<const float> logits);

// Samples one token id per call from a vector of vocab_size logits. Holds reusable buffers of
// vocab_size entries, so sample() does not allocate. A call makes a few linear passes over the
// vocabulary and sorts only the candidates the filters can keep (about 0.15 ms for 152k logits with
// the defaults); top-p alone over a flat distribution still sorts most of the vocabulary.
// Not thread-safe.
class Sampler {
 public:
  // Throws realizar::Error when vocab_size <= 0, a penalty is negative or not finite,
  // top_p or min_p is outside [0, 1] or temperature is not finite.
  Sampler(SamplingParams params, int vocab_size);

  // logits.size() must be vocab_size (else realizar::Error). Does not record the token: call
  // accept() with the token actually used, so penalties also see forced/prompt tokens.
  int32_t sample(std::span<const float> logits);

  // Appends a token to the history the penalties use (only the last penalty_last_n are kept).
  void accept(int32_t token);

  // Forgets the history and restarts the random generator from the seed.
  void reset();

  const SamplingParams& params() const { return params_; }

  // The penalized logits sample() starts from, exposed for tests and for callers that want to
  // inspect them: out[i] = logits[i] adjusted by the penalties above. Sizes must be vocab_size.
  void apply_penalties(std::span<const float> logits, std::span<float> out);

 private:
  struct Candidate {
    int32_t id;
    float logit;
  };
  uint64_t next_random();
  double uniform01();
  static bool ranks_before(const Candidate& a, const Candidate& b);
  static double sum_of_exp(std::span<const float> logits, float max_logit);
  static double sum_of_exp(std::span<const Candidate> candidates, float max_logit);
  void collect_at_least(float threshold);
  void keep_top_k(float max_logit);
  void keep_top_p(float max_logit, double total);
  void sort_prefix(size_t length);
  int32_t draw(float max_logit);

  SamplingParams params_;
  int vocab_size_;
  uint64_t rng_state_[4];
  std::vector<int32_t> history_;      // ring of the last penalty_last_n accepted tokens
  size_t history_next_ = 0;           // ring write position once history_ is full
  // Buffers reused by every sample() call.
  std::vector<float> penalized_;         // vocab_size logits after penalties
  std::vector<Candidate> candidates_;    // tokens still in the running
  size_t sorted_count_ = 0;              // candidates_[0, sorted_count_) are in ranks_before order
  std::vector<float> weights_;           // unnormalized probabilities of the survivors
  std::vector<int32_t> window_scratch_;  // sorted copy of history_
};

// Finds stop strings in streamed text. Feed decoded pieces in order; each call returns the text
// that can be shown now. A suffix that could still grow into a stop string is held back until a
// later piece decides it. A stop string matches as soon as it is complete in the text fed so far
// (when one piece completes several, the one starting earliest wins): the text before it is
// returned, stopped becomes true, and the stop string and everything after it are dropped (also in
// later calls). Matching is on bytes; pieces and stops in UTF-8 split only at character starts.
class StopMatcher {
 public:
  struct Result {
    std::string text;  // safe to emit now
    bool stopped;      // a stop string was found (now or earlier)
  };

  // Empty stop strings are ignored.
  explicit StopMatcher(std::vector<std::string> stops);

  Result feed(std::string_view piece);

  // At the end of generation: returns the held-back text (empty once stopped).
  std::string flush();

  bool stopped() const { return stopped_; }

 private:
  size_t held_suffix_length() const;

  std::vector<std::string> stops_;
  std::string pending_;  // held-back text, a possible start of a stop string
  bool stopped_ = false;
};

}  // namespace realizar
