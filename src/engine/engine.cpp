#include "realizar/engine.h"

#include <algorithm>

#include "engine/backend_factory.h"
#include "engine/scheduler.h"
#include "kv/kv_manager.h"
#include "realizar/tokenizer_gguf.h"

namespace realizar {
namespace {

constexpr int64_t kDefaultContext = 4096;
constexpr int kMaxTopLogprobs = 20;  // OpenAI's limit

RequestError invalid(const std::string& message) {
  return RequestError(RequestError::Code::InvalidRequest, message);
}

// The request's fields the scheduler relies on; throws RequestError naming the first bad one.
void check_request(const Request& request, int64_t vocab_size, int64_t context_length) {
  const GenerationOptions& o = request.options;
  if (request.prompt.empty()) throw invalid("the prompt is empty");
  for (const int32_t token : request.prompt) {
    if (token < 0 || token >= vocab_size) {
      throw invalid(fmt::format("prompt token id {} is outside the vocabulary (size {})", token, vocab_size));
    }
  }
  if (static_cast<int64_t>(request.prompt.size()) >= context_length) {
    throw RequestError(RequestError::Code::ContextLengthExceeded,
                       fmt::format("the prompt has {} tokens but the context holds {} (prompt and output)",
                                   request.prompt.size(), context_length));
  }
  if (o.max_tokens < 1) throw invalid(fmt::format("max_tokens must be at least 1, got {}", o.max_tokens));
  if (o.top_logprobs > kMaxTopLogprobs) {
    throw invalid(fmt::format("top_logprobs must be at most {}, got {}", kMaxTopLogprobs, o.top_logprobs));
  }
  try {
    check_sampling_params(o.sampling);
  } catch (const Error& e) {
    throw invalid(e.what());
  }
}

// The KV pool in tokens, a whole number of blocks, at least one context.
int64_t kv_pool_tokens(const EngineOptions& o, int64_t context, int64_t bytes_per_token) {
  int64_t tokens = o.kv_cache_tokens;
  if (tokens <= 0 && o.kv_cache_bytes > 0) tokens = o.kv_cache_bytes / bytes_per_token;
  if (tokens <= 0) tokens = context * std::max(o.max_sequences, 1);
  tokens = (tokens + kKvBlockSize - 1) / kKvBlockSize * kKvBlockSize;
  if (tokens < context) {
    fail("the KV cache holds {} tokens ({} bytes each), less than one context of {} "
         "(give it more memory or lower the context length)",
         tokens, bytes_per_token, context);
  }
  return tokens;
}

}  // namespace

Device parse_device(std::string_view name) {
  if (name == "auto") return Device::Auto;
  if (name == "cpu") return Device::Cpu;
  if (name == "cuda") return Device::Cuda;
  if (name == "reference") return Device::Reference;
  fail("unknown device '{}' (expected auto, cpu, cuda or reference)", name);
}

const char* finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::None: return "";
    case FinishReason::Stop: return "stop";
    case FinishReason::Length: return "length";
    case FinishReason::Cancelled: return "cancelled";
    case FinishReason::Error: return "error";
  }
  fail("unknown finish reason {}", static_cast<int>(reason));
}

std::unique_ptr<Model> Model::load(const std::filesystem::path& path) {
  gguf::File file = gguf::File::open(path);
  ModelConfig config = ModelConfig::from_gguf(file);
  ModelWeights weights = ModelWeights::from_gguf(file, config);
  Tokenizer tokenizer(tokenizer_spec_from_gguf(file));
  if (tokenizer.vocab_size() > static_cast<size_t>(config.vocab_size)) {
    fail("{}: the tokenizer has {} tokens but the model only {} embeddings", path.string(),
         tokenizer.vocab_size(), config.vocab_size);
  }
  return std::unique_ptr<Model>(new Model{std::move(file), std::move(config), std::move(weights),
                                          std::move(tokenizer)});
}

// ---- request events ------------------------------------------------------------------------------

void RequestChannel::push(RequestEvent event) {
  {
    std::lock_guard lock(mutex_);
    finished_ = finished_ || event.finish != FinishReason::None;
    events_.push_back(std::move(event));
  }
  ready_.notify_one();
}

std::optional<RequestEvent> RequestChannel::pop(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  if (!ready_.wait_for(lock, timeout, [&] { return !events_.empty() || delivered_; }) || events_.empty()) {
    return std::nullopt;
  }
  RequestEvent event = std::move(events_.front());
  events_.pop_front();
  delivered_ = delivered_ || event.finish != FinishReason::None;
  return event;
}

RequestStream::~RequestStream() {
  if (channel_) channel_->abandon();  // no-op for the scheduler once the request has finished
}

std::optional<RequestEvent> RequestStream::next(std::chrono::milliseconds timeout) {
  return channel_->pop(timeout);
}

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds(std::move(upper_bounds)), counts(bounds.size() + 1, 0) {}

void Histogram::observe(double value) {
  const size_t bucket = static_cast<size_t>(std::lower_bound(bounds.begin(), bounds.end(), value) - bounds.begin());
  ++counts[bucket];
  sum += value;
  ++count;
}

// ---- the engine ----------------------------------------------------------------------------------

Engine::Engine(const std::filesystem::path& model_path, const EngineOptions& options)
    : model_(Model::load(model_path)), options_(options) {
  if (options.max_sequences < 1) fail("the number of parallel sequences must be at least 1, got {}", options.max_sequences);
  if (options.max_batch_tokens < 1) fail("the step token budget must be at least 1, got {}", options.max_batch_tokens);
  context_length_ = options.context_length > 0 ? options.context_length
                                               : std::min(model_->config.context_length, kDefaultContext);
  const Device device = resolve_device(options.device);
  kv_cache_tokens_ = kv_pool_tokens(options, context_length_, kv_bytes_per_token(device, model_->config));
  BackendOptions backend_options;
  backend_options.cache_slots = kv_cache_tokens_;
  backend_options.max_sequence_length = context_length_;
  backend_options.threads = options.threads;
  backend_options.tensor_parallel = options.tensor_parallel;
  std::unique_ptr<Backend> backend = make_backend(device, *model_, backend_options);
  device_name_ = std::string(backend->name());
  device_detail_ = backend->detail();
  SchedulerLimits limits;
  limits.context_length = context_length_;
  limits.max_sequences = options.max_sequences;
  limits.max_batch_tokens = options.max_batch_tokens;
  limits.max_waiting = options.max_waiting;
  scheduler_ = std::make_unique<Scheduler>(
      std::move(backend), KvManager(kv_cache_tokens_ / kKvBlockSize, kKvBlockSize, options.prefix_caching),
      model_->tokenizer, limits);
}

Engine::~Engine() = default;

RequestStream Engine::submit(Request request) {
  static std::atomic<uint64_t> next_id{1};
  check_request(request, model_->config.vocab_size, context_length_);
  const uint64_t id = next_id++;
  auto channel = std::make_shared<RequestChannel>();
  scheduler_->submit(id, std::move(request), channel);
  return RequestStream(id, channel);
}

void Engine::cancel(uint64_t id) { scheduler_->cancel(id); }

void Engine::stop_accepting() { scheduler_->stop_accepting(); }

EngineMetrics Engine::metrics() const { return scheduler_->metrics(); }

GenerationStats Engine::generate(const std::vector<int32_t>& prompt, const GenerationOptions& options,
                                 const std::function<void(std::string_view)>& on_text) {
  RequestStream stream = submit(Request{prompt, options});
  while (std::optional<RequestEvent> event = stream.next()) {
    if (!event->text.empty()) on_text(event->text);
    if (event->finish == FinishReason::None) continue;
    if (event->finish == FinishReason::Error) fail("{}", event->error);
    const RequestStats& s = event->stats;
    return GenerationStats{s.prompt_tokens, s.cached_tokens, s.generated_tokens,
                           s.ttft_seconds, s.decode_seconds, finish_reason_name(event->finish)};
  }
  fail("the request ended without a result");
}

}  // namespace realizar
