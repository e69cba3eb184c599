// Helpers shared by the tests: temporary directories, running `apr`, reading files.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/batch_runner.h"
#include "realizar/backend.h"
#include "realizar/error.h"

namespace realizar::testing {

// The message of the realizar::Error that `action` throws ("" and a test failure when it throws
// none).
template <typename Action>
std::string error_of(Action&& action) {
  try {
    action();
  } catch (const Error& error) {
    return error.what();
  }
  ADD_FAILURE() << "no realizar::Error thrown";
  return "";
}

// A fresh directory under the system temp dir, removed when the object goes away.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

struct CommandResult {
  int exit_code;
  std::string out;  // standard output
  std::string err;  // standard error
};

// Runs the built `apr` with the given arguments (no shell involved) and captures its output.
CommandResult run_apr(const std::vector<std::string>& args);

// The repository root (for tests/data/...).
std::filesystem::path source_dir();

// The small golden Hugging Face checkpoints of tools/reference/golden_models.py (qwen2/, llama/,
// phi2/), written once per test process into a temporary directory.
const std::filesystem::path& golden_checkpoints_dir();

// `apr convert` of golden checkpoint `name` (qwen2, llama, phi2) to `dir`/NAME-TYPE.gguf with
// --type `type`; throws std::runtime_error with apr's message when the conversion fails.
std::filesystem::path convert_golden_checkpoint(const TempDir& dir, const std::string& name,
                                                const std::string& type);

// max |got - want| / max |want| over two logit arrays of the same size (the golden tests'
// tolerance measure); infinity when `got` holds a NaN.
double relative_max_error(const std::vector<float>& got, const std::vector<float>& want);

// Index of the largest of n logits (the first one on ties).
int32_t argmax(const float* logits, int64_t n);

std::string read_file(const std::filesystem::path& path);

// The path of real model `name` from tools/fetch_models.sh (downloaded once into its cache). When
// the download fails: nullopt if REALIZAR_OFFLINE=1 (the caller skips), else a test failure naming
// the script's exit code, and nullopt.
std::optional<std::filesystem::path> real_model(const std::string& name);

// Backend sizes for a test: room for `cache_tokens` tokens (rounded up to whole KV blocks), as
// long a sequence, `threads` CPU threads.
BackendOptions cache_options(int64_t cache_tokens, int threads = 0);

// A backend with a BatchRunner of its own: tests lay out their batches, the runner keeps each
// sequence's place in the cache.
class TestBackend {
 public:
  explicit TestBackend(std::unique_ptr<Backend> backend)
      : backend_(std::move(backend)), runner_(*backend_) {}
  void forward(const Batch& batch, std::vector<float>& logits) { runner_.forward(batch, logits); }
  void greedy(const Batch& batch, std::vector<int32_t>& tokens) { runner_.greedy(batch, tokens); }
  void sample(const Batch& batch, std::span<const RowSampling> rows, std::vector<SampledToken>& out) {
    runner_.sample(batch, rows, out);
  }
  void release(int32_t seq) { runner_.release(seq); }
  int64_t length(int32_t seq) const { return runner_.length(seq); }
  Backend& backend() { return *backend_; }
  BatchRunner& runner() { return runner_; }

 private:
  std::unique_ptr<Backend> backend_;
  BatchRunner runner_;
};

inline std::unique_ptr<TestBackend> driven(std::unique_ptr<Backend> backend) {
  return std::make_unique<TestBackend>(std::move(backend));
}
void write_file(const std::filesystem::path& path, const std::string& bytes);

}  // namespace realizar::testing
