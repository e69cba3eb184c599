#include "engine/perplexity.h"

#include <algorithm>
#include <cmath>

#include "engine/batch_runner.h"
#include "realizar/error.h"

namespace realizar {
namespace {

constexpr int32_t kSequence = 0;
constexpr int64_t kMinContext = 4;

// One window as one batch: logits are wanted only where they are scored.
Batch window_batch(std::span<const int32_t> window, int64_t first_scored,
                   const std::optional<int32_t>& bos_token) {
  Batch batch;
  const int64_t context = static_cast<int64_t>(window.size());
  for (int64_t p = 0; p < context; ++p) {
    const int32_t token = (p == 0 && bos_token) ? *bos_token : window[p];
    const bool scored = p >= first_scored && p < context - 1;
    batch.add(token, static_cast<int32_t>(p), kSequence, scored);
  }
  return batch;
}

}  // namespace

void NllAccumulator::add(double nll) {
  sum_ += nll;
  sum_squares_ += nll * nll;
  ++count_;
}

double NllAccumulator::mean() const { return count_ > 0 ? sum_ / count_ : 0.0; }

double NllAccumulator::perplexity() const { return std::exp(mean()); }

double NllAccumulator::standard_error() const {
  if (count_ < 2) return 0.0;
  const double m = mean();
  const double variance = sum_squares_ / count_ - m * m;
  if (variance <= 0) return 0.0;
  return perplexity() * std::sqrt(variance / static_cast<double>(count_ - 1));
}

double token_nll(std::span<const float> logits, int32_t target) {
  if (target < 0 || static_cast<size_t>(target) >= logits.size()) {
    fail("token {} is outside the {} logits", target, logits.size());
  }
  const double max_logit = *std::max_element(logits.begin(), logits.end());
  double sum_exp = 0;
  for (float logit : logits) sum_exp += std::exp(static_cast<double>(logit) - max_logit);
  return max_logit + std::log(sum_exp) - static_cast<double>(logits[target]);
}

std::optional<int32_t> added_bos(const Tokenizer& tokenizer) {
  const std::vector<int32_t> empty = tokenizer.encode("", /*add_special=*/true, false);
  if (!empty.empty() && empty.front() == tokenizer.bos()) return tokenizer.bos();
  return std::nullopt;
}

std::vector<int32_t> perplexity_tokens(const Tokenizer& tokenizer, std::string_view text) {
  const std::vector<int32_t> empty = tokenizer.encode("", /*add_special=*/true, false);
  if (!empty.empty() && empty.back() == tokenizer.eos() && empty.back() != tokenizer.bos()) {
    fail("the model adds EOS to encoded text; perplexity needs text without it");
  }
  return tokenizer.encode(text, /*add_special=*/true, /*parse_special=*/false);
}

void check_perplexity_context(int64_t context, int64_t model_context) {
  if (context < kMinContext) {
    fail("--ctx {} is too small: perplexity needs at least {} tokens per window", context,
         kMinContext);
  }
  if (model_context > 0 && context > model_context) {
    fail("--ctx {} is larger than the model's context of {} tokens", context, model_context);
  }
}

PerplexityResult compute_perplexity(Backend& backend, std::span<const int32_t> tokens,
                                    const PerplexityOptions& options,
                                    const std::function<void(int64_t, double)>& on_chunk) {
  const int64_t context = options.context;
  check_perplexity_context(context, backend.config().context_length);
  const int64_t available = static_cast<int64_t>(tokens.size());
  if (available < 2 * context) {
    fail("the text has {} tokens; perplexity with --ctx {} needs at least {} (two windows)",
         available, context, 2 * context);
  }
  const int64_t whole_windows = available / context;
  const int64_t chunks =
      options.max_chunks > 0 ? std::min(options.max_chunks, whole_windows) : whole_windows;
  const int64_t first_scored = context / 2;
  const size_t vocab = static_cast<size_t>(backend.config().vocab_size);

  NllAccumulator nll;
  std::vector<float> logits;
  BatchRunner runner(backend);
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    const std::span<const int32_t> window = tokens.subspan(chunk * context, context);
    runner.release(kSequence);
    runner.forward(window_batch(window, first_scored, options.bos_token), logits);
    // Row r holds the logits of position first_scored + r, predicting the token after it.
    for (int64_t p = first_scored; p < context - 1; ++p) {
      const std::span<const float> row(logits.data() + (p - first_scored) * vocab, vocab);
      nll.add(token_nll(row, window[p + 1]));
    }
    on_chunk(chunk + 1, nll.perplexity());
  }
  return {nll.perplexity(), nll.standard_error(), chunks, nll.count()};
}

}  // namespace realizar
