// The engine front ends talk to (DESIGN.md §1): loads a GGUF model (weights, hyper-parameters,
// tokenizer), picks a backend and generates text from token ids.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "realizar/backend.h"
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
  int64_t context_length = 0;  // KV cache tokens per sequence; 0: min(model's, 4096)
  int threads = 0;             // CPU threads; 0: all cores
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
  int max_tokens = 128;
  SamplingParams sampling;
  std::vector<std::string> stop;  // generation ends before any of these strings
  bool ignore_eos = false;
};

struct GenerationStats {
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  double prompt_seconds = 0;      // time to first token (TTFT): prefill and the first sample
  double generation_seconds = 0;  // after the first token
  std::string finish_reason;      // "stop" (EOS or a stop string), "length" (max_tokens or the
                                  // context is full)
};

class Engine {
 public:
  Engine(const std::filesystem::path& model_path, const EngineOptions& options);
  ~Engine();

  const Model& model() const { return *model_; }
  const Tokenizer& tokenizer() const { return model_->tokenizer; }
  std::string_view device_name() const { return backend_->name(); }
  int64_t context_length() const { return context_length_; }

  // Runs `prompt` (one batch) and samples up to options.max_tokens tokens, calling `on_text`
  // with text as soon as it is complete UTF-8 and cannot be the start of a stop string.
  // Throws realizar::Error when the prompt is empty or does not fit in the context.
  GenerationStats generate(const std::vector<int32_t>& prompt, const GenerationOptions& options,
                           const std::function<void(std::string_view)>& on_text);

 private:
  std::unique_ptr<Model> model_;
  std::unique_ptr<Backend> backend_;
  int64_t context_length_ = 0;
};

}  // namespace realizar
