#include "bench/synth_cache.h"

#include <unistd.h>

#include <atomic>
#include <thread>

#include <fmt/format.h>

#include "bench/build_info.h"
#include "realizar/convert.h"
#include "realizar/error.h"
#include "realizar/tensor_type.h"
#include "util/paths.h"
#include "util/progress.h"
#include "util/sha256.h"
#include "util/thread_pool.h"

namespace realizar::bench {
namespace {

// Bytes of tensor data the model will hold (the file adds its header): the progress total.
uint64_t expected_tensor_bytes(const SynthPreset& preset, QuantScheme scheme) {
  if (preset.vocab == 0) return 0;  // sized by the tokenizer; small
  uint64_t total = 0;
  for (const TensorPlan& t : synth_tensor_layout(preset, preset.vocab, scheme)) {
    total += row_bytes(t.type, t.dims[0]) * static_cast<uint64_t>(t.row_count());
  }
  return total;
}

// Writes the model to `out`, showing its growing size as progress.
void write_with_progress(const SynthPreset& preset, const SynthOptions& options,
                         const std::filesystem::path& out, int threads) {
  Progress progress("synth " + preset.name, expected_tensor_bytes(preset, options.scheme),
                    Progress::Unit::Bytes);
  std::atomic<bool> done{false};
  std::thread watcher([&] {
    while (!done.load()) {
      std::error_code ec;
      const auto size = std::filesystem::file_size(out, ec);
      if (!ec) progress.update(size);
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  try {
    ThreadPool pool(threads);
    synth_model(preset, out, options, pool);
  } catch (...) {
    done = true;
    watcher.join();
    throw;
  }
  done = true;
  watcher.join();
  progress.finish();
}

}  // namespace

std::filesystem::path default_synth_tokenizer(const std::string& preset_name) {
  const SynthPreset& preset = synth_preset(preset_name);
  const char* folder = preset.architecture == "qwen2" ? "qwen2" : "llama2";
  const std::filesystem::path path =
      std::filesystem::path(kSourceDataDir) / "tokenizers" / folder / "tokenizer.json";
  if (!std::filesystem::exists(path)) {
    fail("--synth {}: the {} tokenizer is not at {} (this binary was built elsewhere); pass "
         "--tokenizer tokenizer.json",
         preset_name, folder, path.string());
  }
  return path;
}

SynthModel cached_synth_model(const SynthRequest& request, int threads) {
  const SynthPreset& preset = synth_preset(request.preset);
  SynthOptions options;
  options.scheme = quant_scheme_from_name(request.type);
  const std::filesystem::path tokenizer =
      request.tokenizer ? *request.tokenizer : default_synth_tokenizer(request.preset);
  const std::string tokenizer_sha = sha256_file_hex(tokenizer);
  options.tokenizer_json = tokenizer;
  const std::filesystem::path dir = realizar_home() / "synth";
  const std::filesystem::path path =
      dir / fmt::format("{}-{}-{}.gguf", preset.name, quant_scheme_name(options.scheme),
                        tokenizer_sha.substr(0, 12));
  const nlohmann::json description = {{"preset", preset.name},
                                      {"type", std::string(quant_scheme_name(options.scheme))},
                                      {"seed", options.seed},
                                      {"tokenizer", tokenizer.string()},
                                      {"tokenizer_sha256", tokenizer_sha},
                                      {"cache_path", path.string()}};
  if (std::filesystem::exists(path)) return {path, description};
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) fail("--synth: cannot create {}: {}", dir.string(), ec.message());
  const std::filesystem::path partial = path.string() + fmt::format(".partial-{}", getpid());
  try {
    write_with_progress(preset, options, partial, threads);
    std::filesystem::rename(partial, path, ec);
    if (ec) fail("--synth: cannot move {} into the cache: {}", partial.string(), ec.message());
  } catch (...) {
    std::filesystem::remove(partial, ec);
    throw;
  }
  return {path, description};
}

}  // namespace realizar::bench
