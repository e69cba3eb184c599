#include "parallel/simulated_tensor_parallel.h"

#include <algorithm>
#include <vector>

#include "backend/reference/reference_math.h"
#include "kv/kv_manager.h"
#include "parallel/shard_plan.h"
#include "parallel/shard_weights.h"
#include "realizar/error.h"

namespace realizar::parallel {
namespace {

using reference::Activations;

struct Rank {
  RankWeights shard;
  reference::KvStorage kv;
};

// The all-reduce of one step's partial outputs: out = float(sum over ranks in rank order, in
// double, + bias), the bias (when present) added once.
Activations all_reduce(std::span<const Activations> partials, const WeightTensor& bias) {
  Activations out(partials.front().tokens, partials.front().width);
  const std::vector<float> b = bias.present() ? reference::dequantized_row(bias, 0) : std::vector<float>();
  for (int64_t t = 0; t < out.tokens; ++t) {
    for (int64_t i = 0; i < out.width; ++i) {
      double sum = 0.0;
      for (const Activations& p : partials) sum += p.row(t)[i];
      if (!b.empty()) sum += b[static_cast<size_t>(i)];
      out.row(t)[i] = static_cast<float>(sum);
    }
  }
  return out;
}

class SimulatedTensorParallel final : public Backend {
 public:
  SimulatedTensorParallel(const ModelConfig& config, const ModelWeights& weights, int ranks,
                          const BackendOptions& options)
      : config_(config),
        weights_(weights),
        plan_(plan_tensor_parallel(config, weights, ranks)),
        cache_slots_(options.cache_slots) {
    for (int r = 0; r < plan_.ranks; ++r) {
      ranks_.push_back(Rank{shard_weights(plan_, config_, weights_, r),
                            reference::KvStorage(config_.block_count, cache_slots_, plan_.kv_dims(r).size())});
    }
  }

  std::string_view name() const override { return "simulated-tensor-parallel"; }
  const ModelConfig& config() const override { return config_; }
  int64_t cache_slots() const override { return cache_slots_; }
  // Over all ranks: their KV heads together are the model's.
  int64_t kv_bytes_per_token() const override { return kv_cache_bytes_per_token(config_, sizeof(float)); }

  void copy_blocks(std::span<const BlockCopy> copies) override {
    for (Rank& rank : ranks_) rank.kv.copy_blocks(copies);
  }

  void forward(const Batch& batch, const KvStep& cache, std::vector<float>& logits) override {
    gather(logit_shards(batch, cache), logits);
  }

  void sample(const Batch& batch, const KvStep& cache, std::span<const RowSampling> rows,
              std::vector<SampledToken>& out) override {
    if (rows.size() != batch.output_count()) {
      fail("sample: {} sampling rows for {} output rows", rows.size(), batch.output_count());
    }
    const std::vector<Activations> shards = logit_shards(batch, cache);
    gather(shards, logits_);
    const auto vocab = static_cast<size_t>(config_.vocab_size);
    out.resize(rows.size());
    for (size_t i = 0; i < rows.size(); ++i) {
      if (rows[i].params.is_plain_greedy() && rows[i].top_logprobs < 0) {
        greedy_across_ranks(shards, static_cast<int64_t>(i), out[i]);
      } else {
        sample_row_on_host(std::span<const float>(logits_).subspan(i * vocab, vocab), rows[i], out[i]);
      }
    }
  }

 private:
  const LayerWeights& rank_layer(const Rank& rank, int64_t l) const {
    return rank.shard.weights.layers[static_cast<size_t>(l)];
  }

  // Every rank's LM-head shard for the wanted rows: [outputs x vocab_rows_per_rank], padding -inf.
  std::vector<Activations> logit_shards(const Batch& batch, const KvStep& cache) {
    batch.check_tokens(config_.vocab_size);
    Activations x = reference::embed(config_, weights_, batch);
    for (int64_t l = 0; l < config_.block_count; ++l) x = layer(l, batch, cache, x);
    const Activations h = reference::output_hidden(config_, weights_, batch, x);
    std::vector<Activations> shards;
    for (const Rank& rank : ranks_) {
      const ModelWeights& w = rank.shard.weights;
      const Activations local = reference::linear(w.output, w.output_bias, h);
      Activations& shard = shards.emplace_back(h.tokens, plan_.vocab_rows_per_rank);
      std::fill(shard.data.begin(), shard.data.end(), -INFINITY);
      for (int64_t t = 0; t < h.tokens; ++t) std::copy_n(local.row(t), local.width, shard.row(t));
    }
    return shards;
  }

  Activations layer(int64_t l, const Batch& batch, const KvStep& cache, const Activations& x) {
    const LayerWeights& w = weights_.layers[static_cast<size_t>(l)];
    const auto attention = [&](const Activations& h) {
      std::vector<Activations> partials;
      for (Rank& rank : ranks_) {
        const LayerWeights& rw = rank_layer(rank, l);
        const Activations heads = reference::attention(rank.shard.config, rw, l, batch, cache, rank.kv, h);
        partials.push_back(reference::linear(rw.attn_output, WeightTensor{}, heads));
      }
      return all_reduce(partials, w.attn_output_bias);
    };
    const auto mlp = [&](const Activations& h) {
      std::vector<Activations> partials;
      for (const Rank& rank : ranks_) {
        // The rank's ffn_down_bias is absent (shard_weights), so this is down's partial sum.
        partials.push_back(reference::feed_forward(rank.shard.config, rank_layer(rank, l), h));
      }
      return all_reduce(partials, w.ffn_down_bias);
    };
    return reference::residual_layer(config_, w, x, attention, mlp);
  }

  // The all-gather of the LM head: shards in rank order, padding dropped.
  void gather(const std::vector<Activations>& shards, std::vector<float>& logits) const {
    const int64_t outputs = shards.front().tokens;
    logits.assign(static_cast<size_t>(outputs * config_.vocab_size), 0.0f);
    for (int r = 0; r < plan_.ranks; ++r) {
      const IndexRange vocab = plan_.shards[static_cast<size_t>(r)].vocab;
      for (int64_t t = 0; t < outputs; ++t) {
        std::copy_n(shards[static_cast<size_t>(r)].row(t), vocab.size(),
                    logits.data() + t * config_.vocab_size + vocab.begin);
      }
    }
  }

  void greedy_across_ranks(const std::vector<Activations>& shards, int64_t row, SampledToken& out) const {
    out = SampledToken{};
    try {
      std::vector<RankArgmax> candidates;
      for (int r = 0; r < plan_.ranks; ++r) {
        const IndexRange vocab = plan_.shards[static_cast<size_t>(r)].vocab;
        const float* shard_row = shards[static_cast<size_t>(r)].row(row);
        candidates.push_back(rank_argmax(std::span<const float>(shard_row, static_cast<size_t>(vocab.size())),
                                         vocab.begin));
      }
      out.token = reduce_argmax(candidates);
    } catch (const Error& e) {
      out.token = -1;
      out.error = e.what();
    }
  }

  ModelConfig config_;
  ModelWeights weights_;
  TensorParallelPlan plan_;
  int64_t cache_slots_;
  std::vector<Rank> ranks_;
  std::vector<float> logits_;  // sample()'s gathered logits, reused
};

}  // namespace

std::unique_ptr<Backend> make_simulated_tensor_parallel_backend(const ModelConfig& config,
                                                                const ModelWeights& weights, int ranks,
                                                                const BackendOptions& options) {
  return std::make_unique<SimulatedTensorParallel>(config, weights, ranks, options);
}

RankArgmax rank_argmax(std::span<const float> logits, int64_t first_token) {
  RankArgmax best;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (std::isnan(logits[i])) fail("Sampler: logit of token {} is NaN", first_token + static_cast<int64_t>(i));
    if (logits[i] > best.logit) best = {logits[i], static_cast<int32_t>(first_token + static_cast<int64_t>(i))};
  }
  return best;
}

int32_t reduce_argmax(std::span<const RankArgmax> candidates) {
  RankArgmax best;
  for (const RankArgmax& c : candidates) {
    if (c.logit > best.logit) best = c;  // strictly larger: the earlier rank (lower tokens) keeps a tie
  }
  if (best.token < 0) fail("Sampler: every logit is -inf, nothing can be sampled");
  return best.token;
}

}  // namespace realizar::parallel
