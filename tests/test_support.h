// Helpers shared by the tests: temporary directories, running `apr`, reading files.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace realizar::testing {

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

std::string read_file(const std::filesystem::path& path);
void write_file(const std::filesystem::path& path, const std::string& bytes);

}  // namespace realizar::testing
