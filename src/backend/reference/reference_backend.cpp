#include "backend/reference/reference_backend.h"

#include <vector>

#include "backend/reference/reference_math.h"
#include "kv/kv_manager.h"

namespace realizar {
namespace {

using reference::Activations;

class ReferenceBackend final : public Backend {
 public:
  ReferenceBackend(const ModelConfig& config, const ModelWeights& weights, const BackendOptions& options)
      : config_(config),
        weights_(weights),
        cache_slots_(options.cache_slots),
        kv_(config.block_count, options.cache_slots, config.kv_dim()) {}

  std::string_view name() const override { return "reference"; }
  const ModelConfig& config() const override { return config_; }
  int64_t cache_slots() const override { return cache_slots_; }
  int64_t kv_bytes_per_token() const override {
    return kv_cache_bytes_per_token(config_, sizeof(float));
  }

  void copy_blocks(std::span<const BlockCopy> copies) override { kv_.copy_blocks(copies); }

  void forward(const Batch& batch, const KvStep& cache, std::vector<float>& logits) override {
    batch.check_tokens(config_.vocab_size);
    Activations x = reference::embed(config_, weights_, batch);
    for (int64_t l = 0; l < config_.block_count; ++l) x = layer(l, batch, cache, x);
    const Activations h = reference::output_hidden(config_, weights_, batch, x);
    logits = reference::linear(weights_.output, weights_.output_bias, h).data;
  }

 private:
  Activations layer(int64_t l, const Batch& batch, const KvStep& cache, const Activations& x) {
    const LayerWeights& w = weights_.layers[static_cast<size_t>(l)];
    const auto attention = [&](const Activations& h) {
      return reference::linear(w.attn_output, w.attn_output_bias,
                               reference::attention(config_, w, l, batch, cache, kv_, h));
    };
    const auto mlp = [&](const Activations& h) { return reference::feed_forward(config_, w, h); };
    return reference::residual_layer(config_, w, x, attention, mlp);
  }

  ModelConfig config_;
  ModelWeights weights_;
  int64_t cache_slots_;
  reference::KvStorage kv_;
};

}  // namespace

std::unique_ptr<Backend> make_reference_backend(const ModelConfig& config,
                                                const ModelWeights& weights, const BackendOptions& options) {
  return std::make_unique<ReferenceBackend>(config, weights, options);
}

}  // namespace realizar
