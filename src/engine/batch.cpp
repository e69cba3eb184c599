#include <algorithm>

#include "realizar/backend.h"
#include "realizar/error.h"
#include "realizar/sampling.h"

namespace realizar {

size_t Batch::output_count() const {
  return static_cast<size_t>(std::count(want_logits.begin(), want_logits.end(), uint8_t{1}));
}

void Batch::clear() {
  tokens.clear();
  positions.clear();
  seq_ids.clear();
  want_logits.clear();
}

void Batch::check_tokens(int64_t vocab_size) const {
  for (const int32_t token : tokens) {
    if (token < 0 || token >= vocab_size) fail("token id {} is outside the vocabulary (size {})", token, vocab_size);
  }
}

Backend::~Backend() = default;

void Backend::sample_row_on_host(std::span<const float> logits, const RowSampling& row, SampledToken& out) {
  if (!host_sampler_) host_sampler_ = std::make_unique<Sampler>(static_cast<int>(config().vocab_size));
  out.error.clear();
  out.top.clear();
  try {
    out.token = host_sampler_->sample(logits, row.params, row.history, row.position);
    if (row.top_logprobs >= 0) out.logprob = token_logprob(logits, out.token);
    if (row.top_logprobs > 0) top_logprobs(logits, row.top_logprobs, out.top);
  } catch (const Error& e) {
    out.token = -1;
    out.error = e.what();
  }
}

void Backend::sample(const Batch& batch, const KvStep& cache, std::span<const RowSampling> rows,
                     std::vector<SampledToken>& out) {
  if (rows.size() != batch.output_count()) {
    fail("sample: {} sampling rows for {} output rows", rows.size(), batch.output_count());
  }
  std::vector<float>& logits = host_logits_;
  forward(batch, cache, logits);
  const auto vocab = static_cast<size_t>(config().vocab_size);
  out.resize(rows.size());
  for (size_t r = 0; r < rows.size(); ++r) {
    sample_row_on_host(std::span<const float>(logits).subspan(r * vocab, vocab), rows[r], out[r]);
  }
}

}  // namespace realizar
