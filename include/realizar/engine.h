// The serving engine every front end drives (DESIGN.md §1, §7): loads a GGUF model (weights,
// hyper-parameters, tokenizer), picks a backend and runs many requests at once.
//
// Engine::submit queues a request and returns its RequestStream, from which the caller reads the
// request's events (text as it is generated, then a final event with the finish reason and the
// request's statistics). One scheduler thread owns the backend and the KV manager; it runs steps
// that batch the next token of every running sequence with chunks of waiting prompts, up to
// max_batch_tokens (continuous batching with chunked prefill, as vLLM schedules). A request is
// admitted only when its blocks fit; when blocks run out, the most recently admitted sequence is
// preempted (its blocks freed, itself queued again and recomputed later). Prompts that start
// with cached blocks attach them and prefill only the rest (prefix caching).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "realizar/backend.h"
#include "realizar/error.h"
#include "realizar/gguf.h"
#include "realizar/model.h"
#include "realizar/sampling.h"
#include "realizar/tokenizer.h"

namespace realizar {

enum class Device { Auto, Cpu, Cuda, Reference };

// Parses "auto", "cpu", "cuda", "reference"; throws realizar::Error naming the bad value.
Device parse_device(std::string_view name);

struct EngineOptions {
  Device device = Device::Auto;
  int64_t context_length = 0;    // most tokens one sequence holds, prompt and output; 0: min(model's, 4096)
  int max_sequences = 1;         // sequences running at once (--parallel)
  int64_t kv_cache_tokens = 0;   // KV pool over all sequences, in tokens; 0: from kv_cache_bytes, else
                                 // context_length x max_sequences
  int64_t kv_cache_bytes = 0;    // KV pool size in bytes (--kv-memory), when kv_cache_tokens is 0
  int64_t max_batch_tokens = 512;  // tokens per step: decode rows plus prompt chunks
  int max_waiting = 0;           // requests queued before submit() refuses more; 0: no limit
  bool prefix_caching = true;
  int threads = 0;               // CPU threads; 0: all cores
  int tensor_parallel = 1;       // GPUs to split the model over (BackendOptions::tensor_parallel)
};

// A loaded model: the mapped file and the views into it.
struct Model {
  gguf::File file;
  ModelConfig config;
  ModelWeights weights;
  Tokenizer tokenizer;

  // Throws realizar::Error for a missing or malformed file, an unsupported architecture, a
  // missing tensor or a missing tokenizer.
  static std::unique_ptr<Model> load(const std::filesystem::path& path);
};

struct GenerationOptions {
  int max_tokens = 128;           // at least 1
  SamplingParams sampling;
  std::vector<std::string> stop;  // generation ends before any of these strings
  bool ignore_eos = false;
  int top_logprobs = -1;          // -1: none; 0: each token's log-probability; N <= 20: also the N most likely
};

struct Request {
  std::vector<int32_t> prompt;  // token ids (prompt.h renders text and chat messages)
  GenerationOptions options;
};

// Why submit() refused a request.
class RequestError : public Error {
 public:
  enum class Code { InvalidRequest, ContextLengthExceeded, QueueFull, ShuttingDown };
  RequestError(Code code, const std::string& message) : Error(message), code_(code) {}
  Code code() const { return code_; }

 private:
  Code code_;
};

enum class FinishReason { None, Stop, Length, Cancelled, Error };
// "stop" (EOS or a stop string), "length" (max_tokens, or the context is full), "cancelled",
// "error"; "" for None.
const char* finish_reason_name(FinishReason reason);

// Times in seconds from the request's submission unless said otherwise.
struct RequestStats {
  int64_t prompt_tokens = 0;     // tokens of the prompt
  int64_t cached_tokens = 0;     // of which came from the prefix cache at admission
  int64_t generated_tokens = 0;
  int64_t preemptions = 0;
  double queue_seconds = 0;      // until first scheduled
  double ttft_seconds = 0;       // until the first token (time to first token)
  double prompt_seconds = 0;     // first scheduled -> first token: the prefill
  double decode_seconds = 0;     // first token -> last token
  double total_seconds = 0;      // until finished
};

struct GeneratedToken {
  int32_t id = 0;
  float logprob = 0;              // when asked (GenerationOptions::top_logprobs >= 0)
  std::vector<TokenLogprob> top;  // when asked (top_logprobs > 0)
};

// What a request produced since its previous event. The last event has finish != None.
struct RequestEvent {
  std::string text;                    // generated text now complete (UTF-8, past any stop-string prefix)
  std::vector<GeneratedToken> tokens;  // tokens generated since the previous event
  FinishReason finish = FinishReason::None;
  std::string error;                   // finish == Error: what went wrong
  RequestStats stats;                  // on the last event
  std::chrono::steady_clock::time_point time;  // when the engine produced it
};

// The per-request queue of events between the scheduler and one reader.
class RequestChannel {
 public:
  void push(RequestEvent event);
  // The next event, waiting up to `timeout`; nullopt when none came (or the final one was read).
  std::optional<RequestEvent> pop(std::chrono::milliseconds timeout);
  void abandon() { abandoned_ = true; }
  bool abandoned() const { return abandoned_; }

 private:
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<RequestEvent> events_;
  bool finished_ = false;   // the final event was pushed
  bool delivered_ = false;  // and popped
  std::atomic<bool> abandoned_{false};
};

// A reader's handle on a submitted request. Dropping it without reading to the end cancels the
// request (a client that went away frees its blocks).
class RequestStream {
 public:
  RequestStream(uint64_t id, std::shared_ptr<RequestChannel> channel) : id_(id), channel_(std::move(channel)) {}
  RequestStream(RequestStream&&) = default;
  RequestStream& operator=(RequestStream&&) = default;
  ~RequestStream();

  uint64_t id() const { return id_; }
  // The next event; nullopt on timeout or after the final event.
  std::optional<RequestEvent> next(std::chrono::milliseconds timeout = std::chrono::hours(24));

 private:
  uint64_t id_;
  std::shared_ptr<RequestChannel> channel_;
};

// A Prometheus-style histogram: counts[i] observations <= bounds[i] (not cumulative), the last
// entry counting those above every bound.
struct Histogram {
  std::vector<double> bounds;
  std::vector<uint64_t> counts;
  double sum = 0;
  uint64_t count = 0;

  explicit Histogram(std::vector<double> upper_bounds = {});
  void observe(double value);
};

// The engine's state and totals since it started, for /metrics.
struct EngineMetrics {
  int64_t requests_running = 0, requests_waiting = 0;
  int64_t kv_blocks_total = 0, kv_blocks_used = 0, kv_blocks_free = 0, kv_blocks_cached = 0;
  int64_t kv_block_size = 0;
  int64_t prefix_cache_queries = 0, prefix_cache_hits = 0;  // tokens
  int64_t preemptions = 0;
  int64_t prompt_tokens = 0, generation_tokens = 0;          // computed prompt tokens, generated ones
  std::map<std::string, int64_t> requests_finished;          // by finish reason
  int64_t steps = 0;
  Histogram time_to_first_token{{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80}};
  Histogram inter_token_latency{{0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5}};
  Histogram e2e_request_latency{{0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960}};
  Histogram request_queue_time{{0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}};
  // Per step that succeeded: the tokens it computed (decode rows and prompt chunks) and the
  // seconds its backend call took (block copies, forward pass, sampling).
  Histogram iteration_tokens{{1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192}};
  Histogram step_duration{{0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1, 2.5}};
};

// The outcome of generate(), for `apr run`.
struct GenerationStats {
  int64_t prompt_tokens = 0;
  int64_t cached_tokens = 0;
  int64_t generated_tokens = 0;
  double prompt_seconds = 0;      // time to first token (TTFT): prefill and the first sample
  double generation_seconds = 0;  // after the first token
  std::string finish_reason;
};

class Scheduler;

class Engine {
 public:
  // Loads the model, builds the backend and the KV pool, and starts the scheduler. Throws
  // realizar::Error for a bad model or options (a pool smaller than one context, ...).
  Engine(const std::filesystem::path& model_path, const EngineOptions& options);
  // Cancels every request and stops the scheduler.
  ~Engine();

  const Model& model() const { return *model_; }
  const Tokenizer& tokenizer() const { return model_->tokenizer; }
  std::string_view device_name() const { return device_name_; }
  // The device as start lines name it, with the backend's detail() (its kernel set, its weight
  // copies): "cpu (avx512-vnni)", "cuda (float16 weight copies: ...)", "reference".
  std::string device_label() const {
    return device_detail_.empty() ? device_name_ : device_name_ + " (" + device_detail_ + ")";
  }
  int64_t context_length() const { return context_length_; }
  int64_t kv_cache_tokens() const { return kv_cache_tokens_; }
  const EngineOptions& options() const { return options_; }

  // Queues a request. Throws RequestError before queuing: InvalidRequest (empty prompt, a token
  // outside the vocabulary, bad sampling parameters, max_tokens < 1, top_logprobs > 20),
  // ContextLengthExceeded (the prompt does not leave room for one token in the context),
  // QueueFull (max_waiting requests already wait), ShuttingDown.
  RequestStream submit(Request request);
  // Ends the request with FinishReason::Cancelled at the scheduler's next step; its blocks are
  // freed then. Unknown or finished ids are ignored.
  void cancel(uint64_t id);
  // Stops admitting requests (submit throws ShuttingDown); running ones go on.
  void stop_accepting();
  EngineMetrics metrics() const;

  // submit() and read to the end, calling `on_text` with the text as it comes. Throws
  // realizar::Error as submit() does, and when the request ends in an error.
  GenerationStats generate(const std::vector<int32_t>& prompt, const GenerationOptions& options,
                           const std::function<void(std::string_view)>& on_text);

 private:
  std::unique_ptr<Model> model_;
  EngineOptions options_;
  int64_t context_length_ = 0;
  int64_t kv_cache_tokens_ = 0;
  std::string device_name_;
  std::string device_detail_;
  std::unique_ptr<Scheduler> scheduler_;
};

}  // namespace realizar
