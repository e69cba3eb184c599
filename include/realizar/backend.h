// The one interface every backend implements (DESIGN.md §1): run a batch of tokens from one or
// more sequences through the model. Single-sequence decode is a batch of one token; prefill is a
// batch of many; the scheduler mixes decode rows of many sequences with prompt chunks.
//
// The backend owns the KV cache's storage only: where each token's key and value go, and which
// blocks hold each sequence's earlier ones, is decided by the engine's KV manager
// (src/kv/kv_manager.h) and handed to every step (KvStep).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "realizar/model.h"
#include "realizar/sampling.h"

namespace realizar {

class KvManager;
struct BlockCopy;

// Tokens to run, each with its sequence, its position in that sequence and whether its logits
// are wanted (like llama.cpp's llama_batch).
struct Batch {
  std::vector<int32_t> tokens;
  std::vector<int32_t> positions;
  std::vector<int32_t> seq_ids;
  std::vector<uint8_t> want_logits;

  void add(int32_t token, int32_t position, int32_t seq_id, bool logits) {
    tokens.push_back(token);
    positions.push_back(position);
    seq_ids.push_back(seq_id);
    want_logits.push_back(logits ? 1 : 0);
  }
  size_t size() const { return tokens.size(); }
  size_t output_count() const;
  void clear();
  // Throws realizar::Error naming the first token id outside [0, vocab_size).
  void check_tokens(int64_t vocab_size) const;
};

// Where a step's tokens live in the paged cache: token i's key and value are written to slot
// slots[i]; the keys a token attends to are positions [0, position] of its sequence, found
// through kv.blocks(seq_id) (the tokens of this step included, as they are written first).
struct KvStep {
  const KvManager& kv;
  std::span<const int64_t> slots;
};

// How to choose the token of one output row.
struct RowSampling {
  SamplingParams params;
  std::span<const int32_t> history;  // the sequence's tokens so far, prompt included, oldest first
  int64_t position = 0;              // position of the token being chosen (its random draw's counter)
  int top_logprobs = -1;             // -1: no log-probabilities; 0: the chosen token's; N: also the N most likely
};

// The choice for one output row.
struct SampledToken {
  int32_t token = -1;
  float logprob = 0;               // log softmax of the raw logits at `token` (when asked)
  std::vector<TokenLogprob> top;   // the most likely tokens with theirs (when asked)
  std::string error;               // non-empty: no token (the row's logits hold a NaN, ...)
};

class Backend {
 public:
  virtual ~Backend();
  virtual std::string_view name() const = 0;
  // What the backend chose at load that the start line shows after its name (the CPU kernel set,
  // the CUDA float16 weight copies); empty: nothing.
  virtual std::string detail() const { return {}; }
  virtual const ModelConfig& config() const = 0;

  // Token slots of the cache storage (the KV manager driving this backend has as many).
  virtual int64_t cache_slots() const = 0;
  // Bytes one token's keys and values take in the cache, over all layers.
  virtual int64_t kv_bytes_per_token() const = 0;

  // Copies the slots of each block `from` to block `to` (every layer, keys and values): the
  // KV manager's copy-on-write, run before the step that writes `to`.
  virtual void copy_blocks(std::span<const BlockCopy> copies) = 0;

  // Runs every token of `batch`, writing its key and value at its slot, and fills `logits` with
  // [batch.output_count() x vocab_size] floats, one row per token whose logits are wanted, in
  // batch order. Throws realizar::Error when a token id is outside the vocabulary or the device
  // fails.
  virtual void forward(const Batch& batch, const KvStep& cache, std::vector<float>& logits) = 0;

  // Runs `batch` as forward() does and chooses the token of each wanted row by rows[i] (one
  // entry per output row, in order), as Sampler::sample does (sampling.h), with log-probabilities
  // when asked. A row that cannot be sampled gets its error in out[i].error and leaves the other
  // rows alone. The default runs forward() and samples on the host; a GPU backend samples on the
  // device and hands back token ids only.
  virtual void sample(const Batch& batch, const KvStep& cache, std::span<const RowSampling> rows,
                      std::vector<SampledToken>& out);

 protected:
  // Chooses one row's token from its logits on the host (the default sample()'s part per row, for
  // backends that sample some rows on the host): errors go into out.error.
  void sample_row_on_host(std::span<const float> logits, const RowSampling& row, SampledToken& out);

 private:
  std::unique_ptr<Sampler> host_sampler_;  // made at the first host sample
  std::vector<float> host_logits_;         // the default sample()'s logits, reused
};

// Bytes one token's keys and values take in a cache of `element_bytes` per value, over all layers.
inline int64_t kv_cache_bytes_per_token(const ModelConfig& config, int64_t element_bytes) {
  return 2 * config.block_count * config.kv_dim() * element_bytes;
}

// Sizes a backend is built with.
// Whether the CUDA backend keeps float16 copies of its weight matrices, and when it multiplies
// with them (cuBLAS) instead of its kernels on the quantized weights: steps over 64 tokens always;
// steps of 2-64 tokens by a measurement at load (Measured), always (Always, for tests), or never
// (Off; REALIZAR_CUDA_HALF_WEIGHTS=0 makes Measured Off too).
enum class HalfWeightCopies { Off, Measured, Always };

struct BackendOptions {
  int64_t cache_slots = 0;          // token slots of the KV cache, over all sequences
  int64_t max_sequence_length = 0;  // longest sequence a step will attend over
  int threads = 0;                  // CPU threads (0: all cores)
  int tensor_parallel = 1;          // ranks (GPUs) to split the model over (docs/tensor-parallel.md)
  // CUDA: float16 copies of the weight matrices in device memory the KV cache leaves idle.
  HalfWeightCopies half_weight_copies = HalfWeightCopies::Measured;
};

}  // namespace realizar
