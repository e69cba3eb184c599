// Token sampling from logits, and stop-string matching on the generated text.
//
// The sampling chain follows llama.cpp's default sampler chain (common/sampling.cpp,
// src/llama-sampling.cpp): penalties -> top-k -> top-p -> min-p -> temperature -> softmax -> draw.
// Like llama.cpp, the filters look at the penalized logits at temperature 1; temperature only
// reshapes the distribution among the tokens that survive them.
//   - repeat penalty (CTRL, Keskar et al. 2019, as llama.cpp applies it): a token seen in the last
//     penalty_last_n tokens of the sequence (prompt included) has a positive logit divided by
//     repeat_penalty, a negative one multiplied by it;
//   - presence / frequency penalties (OpenAI API definition): logit -= count * frequency_penalty
//     + (count > 0) * presence_penalty, count = occurrences in that window;
//   - top-k (Fan et al. 2018): keep the k largest logits;
//   - top-p / nucleus (Holtzman et al. 2019): keep the smallest prefix of the candidates sorted by
//     probability whose cumulative probability is >= top_p (at least one token);
//   - min-p (Nguyen et al. 2024): keep tokens with p >= min_p * p_max;
//   - temperature: logits / temperature, then softmax and one draw.
// Candidates are ordered by logit descending, ties by lower token id, so every step is
// deterministic. The one random number of a draw is sampling_uniform(seed, position, 0)
// (src/sampling/philox.h: Philox4x32-10 keyed by the seed, counted by the token's position), the
// same on the host and on the GPU, so a seeded request picks the same tokens whatever else shares
// its batch (unless logits computed by different kernels differ at a draw boundary).
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
  float temperature = 0.8f;       // 0: greedy (argmax of the penalized logits)
  int top_k = 40;                 // <= 0 or >= vocab: off
  float top_p = 0.95f;            // >= 1: off
  float min_p = 0.05f;            // <= 0: off
  float repeat_penalty = 1.0f;    // 1: off
  float presence_penalty = 0.0f;  // 0: off
  float frequency_penalty = 0.0f; // 0: off
  int penalty_last_n = 64;        // window of the sequence's last tokens the penalties look at; 0: off
  uint64_t seed = 0x5EED;

  // Greedy with no penalty that could change the arg max: the token is the largest raw logit, so
  // a backend can pick it without handing back the logits.
  bool is_plain_greedy() const;
  // Whether any penalty changes a logit.
  bool has_penalties() const;
};

// Throws realizar::Error naming the first parameter out of range: temperature negative or not
// finite, top_p or min_p outside [0, 1], repeat_penalty not positive and finite, presence or
// frequency penalty not finite, penalty_last_n negative.
void check_sampling_params(const SamplingParams& params);

// Greedy decoding: the id of the largest logit, the lowest among equal ones. Throws
// realizar::Error when a logit is NaN or every logit is -inf.
int32_t greedy_token(std::span<const float> logits);

// A token and its log-probability.
struct TokenLogprob {
  int32_t token;
  float logprob;
};

// log softmax(logits)[token]: the model's own log-probability of `token` (before penalties and
// temperature, as vLLM and OpenAI report it).
float token_logprob(std::span<const float> logits, int32_t token);

// The `n` most likely tokens in rank order (ties: lower id first) with their log-probabilities.
void top_logprobs(std::span<const float> logits, int n, std::vector<TokenLogprob>& out);

// Chooses tokens from vectors of vocab_size logits. Holds reusable buffers of vocab_size entries
// (no request state: the parameters and the sequence's tokens come with each call), so sample()
// does not allocate. A call makes a few linear passes over the vocabulary and sorts only the
// candidates the filters can keep (about 0.15 ms for 152k logits with the defaults); top-p alone
// over a flat distribution still sorts most of the vocabulary. Not thread-safe.
class Sampler {
 public:
  // Throws realizar::Error when vocab_size <= 0.
  explicit Sampler(int vocab_size);

  // The token at `position` of a sequence whose tokens so far (prompt included, oldest first) are
  // `history`: penalties over the last params.penalty_last_n of them, the filters, then
  // inverse-CDF sampling with u = sampling_uniform(params.seed, position, draw) over the survivors
  // in rank order (in id order when neither top-k nor top-p is active: no sort is needed then). Throws realizar::Error when logits.size() != vocab_size, a logit is NaN or
  // all are -inf, a history token is outside the vocabulary, or the parameters are invalid.
  int32_t sample(std::span<const float> logits, const SamplingParams& params,
                 std::span<const int32_t> history, int64_t position, uint32_t draw = 0);

  // The tokens that survive penalties, top-k, top-p and min-p, in rank order (sample()'s
  // candidates; a single token when greedy; id order when neither top-k nor top-p is active).
  // The span is valid until the next call.
  std::span<const int32_t> survivors(std::span<const float> logits, const SamplingParams& params,
                                     std::span<const int32_t> history);

  // out[i] = logits[i] adjusted by the penalties over the last penalty_last_n tokens of
  // `history`. Sizes must be vocab_size.
  void apply_penalties(std::span<const float> logits, const SamplingParams& params,
                       std::span<const int32_t> history, std::span<float> out);

 private:
  struct Candidate {
    int32_t id;
    float logit;
  };
  static bool ranks_before(const Candidate& a, const Candidate& b);
  static double sum_of_exp(std::span<const float> logits, float max_logit);
  static double sum_of_exp(std::span<const Candidate> candidates, float max_logit);
  // Leaves the survivors of the filters in candidates_ (rank order up to sorted_count_); returns
  // the largest penalized logit.
  float filter(std::span<const float> logits, const SamplingParams& params,
               std::span<const int32_t> history);
  void collect_at_least(float threshold);
  void keep_top_k(int k, float max_logit);
  void keep_top_p(float top_p, float max_logit, double total);
  void sort_prefix(size_t length);
  int32_t draw(float temperature, float max_logit, double uniform);

  int vocab_size_;
  // Buffers reused by every call.
  std::vector<float> penalized_;         // vocab_size logits after penalties
  std::vector<Candidate> candidates_;    // tokens still in the running
  size_t sorted_count_ = 0;              // candidates_[0, sorted_count_) are in ranks_before order
  std::vector<float> weights_;           // unnormalized probabilities of the survivors
  std::vector<int32_t> window_scratch_;  // sorted copy of the penalty window
  std::vector<int32_t> survivor_ids_;    // survivors()'s result
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
