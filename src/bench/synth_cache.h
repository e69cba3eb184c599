// `apr bench --synth PRESET`: the random-weight model of a real architecture (apr synth), built
// once with the preset's tokenizer and cached under realizar_home()/synth/, so that anyone can
// reproduce a number without downloading weights.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace realizar::bench {

struct SynthRequest {
  std::string preset;                               // synth_presets() name
  std::string type = "q4_k_m";                      // quant_scheme_from_name
  std::optional<std::filesystem::path> tokenizer;   // default: default_synth_tokenizer
};

struct SynthModel {
  std::filesystem::path path;
  nlohmann::json description;  // {preset, type, seed, tokenizer, tokenizer_sha256, cache_path}
};

// The tokenizer.json of the source tree (tests/data/tokenizers/, located through the directory
// baked in at build time) that the preset's architecture uses: qwen2/ for the Qwen2.5 presets,
// llama2/ for the LLaMA ones. Throws realizar::Error when the file is not there, saying to pass
// --tokenizer.
std::filesystem::path default_synth_tokenizer(const std::string& preset);

// The cached model for `request`, written first when missing: synth/PRESET-TYPE-TOKENIZER.gguf
// where TOKENIZER is the first 12 hex digits of the tokenizer file's SHA-256, so a different
// tokenizer is a different file. Written to a temporary name and renamed when complete, so an
// interrupted build leaves no half file in the cache; progress is shown on a terminal.
SynthModel cached_synth_model(const SynthRequest& request, int threads);

}  // namespace realizar::bench
