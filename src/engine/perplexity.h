// Perplexity of a model over a text, by the method of llama.cpp's llama-perplexity
// (tools/perplexity/perplexity.cpp, function `perplexity`), so numbers compare with it:
//
// - The whole text is tokenized once, adding BOS when the model does (parse_special off).
// - It is cut into non-overlapping windows of `context` tokens; window i holds tokens
//   [i·context, (i+1)·context). Each window runs from an empty KV cache as one batch; when the model
//   adds BOS, the window's first token is replaced by BOS.
// - Only the second half is scored: for positions p in [context/2, context−1), the negative
//   log-likelihood NLL = −log softmax(logits_p)[token_{p+1}], in nats.
// - PPL = exp(mean NLL). Its standard error is the delta-method estimate llama.cpp prints:
//   SE = PPL · sqrt((mean(NLL²) − mean(NLL)²) / (N − 1)) over the N scored tokens.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "realizar/backend.h"
#include "realizar/tokenizer.h"

namespace realizar {

// Running sums of per-token negative log-likelihoods (nats).
class NllAccumulator {
 public:
  void add(double nll);
  int64_t count() const { return count_; }
  double mean() const;        // mean NLL; 0 before the first add
  double perplexity() const;  // exp(mean NLL)
  // PPL · sqrt(variance / (count − 1)), variance = mean(NLL²) − mean(NLL)²; 0 when count < 2 or the
  // variance is not positive (all NLLs equal).
  double standard_error() const;

 private:
  double sum_ = 0;
  double sum_squares_ = 0;
  int64_t count_ = 0;
};

// −log softmax(logits)[target] in nats, computed in double after subtracting the largest logit.
// Throws realizar::Error when `target` is outside [0, logits.size()).
double token_nll(std::span<const float> logits, int32_t target);

struct PerplexityOptions {
  int64_t context = 512;  // tokens per window (llama-perplexity's -c)
  int64_t max_chunks = 0;  // windows to score; 0: every whole window of the text
  // Token that replaces each window's first token, when the model adds BOS; nullopt otherwise.
  std::optional<int32_t> bos_token;
};

struct PerplexityResult {
  double perplexity = 0;
  double standard_error = 0;
  int64_t chunks = 0;         // windows scored
  int64_t scored_tokens = 0;  // chunks · (context − context/2 − 1)
};

// The text's tokens as llama-perplexity takes them: BOS first when the model adds one, control
// tokens written in the text left as plain text. Throws realizar::Error when the model adds EOS
// (llama-perplexity refuses such models too: every window would end inside the text).
std::vector<int32_t> perplexity_tokens(const Tokenizer& tokenizer, std::string_view text);

// The BOS token when `tokenizer` adds one to encoded text, else nullopt.
std::optional<int32_t> added_bos(const Tokenizer& tokenizer);

// Throws realizar::Error when `context` is below 4 (no token would be scored) or above the model's
// training context `model_context`.
void check_perplexity_context(int64_t context, int64_t model_context);

// Scores `tokens` window by window on `backend` (sequence 0, whose cache is released before each
// window; the backend's cache must hold `context` tokens) and calls `on_chunk(chunks done, running
// PPL)` after each window. Throws realizar::Error for a bad context (check_perplexity_context) or
// when `tokens` holds fewer than 2·context tokens (llama-perplexity's rule).
PerplexityResult compute_perplexity(Backend& backend, std::span<const int32_t> tokens,
                                    const PerplexityOptions& options,
                                    const std::function<void(int64_t, double)>& on_chunk);

}  // namespace realizar
