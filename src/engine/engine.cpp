#include "realizar/engine.h"

#include <chrono>

#include "engine/backend_factory.h"
#include "realizar/error.h"
#include "realizar/tokenizer_gguf.h"

namespace realizar {
namespace {

constexpr int64_t kDefaultContext = 4096;
constexpr int32_t kSequence = 0;

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

Device parse_device(std::string_view name) {
  if (name == "auto") return Device::Auto;
  if (name == "cpu") return Device::Cpu;
  if (name == "cuda") return Device::Cuda;
  if (name == "reference") return Device::Reference;
  fail("unknown device '{}' (expected auto, cpu, cuda or reference)", name);
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

Engine::Engine(const std::filesystem::path& model_path, const EngineOptions& options)
    : model_(Model::load(model_path)) {
  const int64_t model_context = model_->config.context_length;
  context_length_ = options.context_length > 0 ? options.context_length
                                               : std::min(model_context, kDefaultContext);
  backend_ = make_backend(options.device, *model_, context_length_, options.threads);
}

Engine::~Engine() = default;

GenerationStats Engine::generate(const std::vector<int32_t>& prompt,
                                 const GenerationOptions& options,
                                 const std::function<void(std::string_view)>& on_text) {
  if (prompt.empty()) fail("the prompt is empty");
  if (static_cast<int64_t>(prompt.size()) >= context_length_) {
    fail("the prompt has {} tokens but the context holds {} (raise --ctx)", prompt.size(),
         context_length_);
  }
  backend_->release_sequence(kSequence);
  const auto start = std::chrono::steady_clock::now();

  Batch batch;
  for (size_t i = 0; i < prompt.size(); ++i) {
    batch.add(prompt[i], static_cast<int32_t>(i), kSequence, i + 1 == prompt.size());
  }
  Sampler sampler(static_cast<int>(model_->config.vocab_size));
  std::vector<int32_t> history = prompt;
  // Plain greedy decoding leaves the choice to the backend, which then returns one id per step
  // instead of the logits (on a GPU: no vocabulary-sized copy per token).
  const bool on_backend = options.sampling.is_plain_greedy();
  std::vector<float> logits;
  std::vector<int32_t> picked;
  const auto next_token = [&] {
    if (on_backend) {
      backend_->forward_greedy(batch, picked);
      return picked.at(0);
    }
    backend_->forward(batch, logits);
    return sampler.sample(logits, options.sampling, history, static_cast<int64_t>(history.size()));
  };
  StreamingDecoder decoder(model_->tokenizer);
  StopMatcher stops(options.stop);

  GenerationStats stats;
  stats.prompt_tokens = static_cast<int64_t>(prompt.size());
  int32_t token = next_token();
  history.push_back(token);
  stats.prompt_seconds = seconds_since(start);
  const auto decode_start = std::chrono::steady_clock::now();

  int64_t position = stats.prompt_tokens;
  stats.finish_reason = "length";
  bool stopped_by_string = false;
  while (true) {
    if (!options.ignore_eos && model_->tokenizer.is_eog(token)) {
      stats.finish_reason = "stop";
      break;
    }
    ++stats.generated_tokens;
    const StopMatcher::Result piece = stops.feed(decoder.feed(token));
    if (!piece.text.empty()) on_text(piece.text);
    if (piece.stopped) {
      stats.finish_reason = "stop";
      stopped_by_string = true;
      break;
    }
    if (stats.generated_tokens >= options.max_tokens || position >= context_length_) break;

    batch.clear();
    batch.add(token, static_cast<int32_t>(position++), kSequence, true);
    token = next_token();
    history.push_back(token);
  }
  if (!stopped_by_string) {  // text held back as a possible stop-string prefix is output after all
    const StopMatcher::Result last = stops.feed(decoder.finish());
    const std::string tail = last.text + (last.stopped ? "" : stops.flush());
    if (!tail.empty()) on_text(tail);
    if (last.stopped) stats.finish_reason = "stop";
  }
  stats.generation_seconds = seconds_since(decode_start);
  return stats;
}

}  // namespace realizar
