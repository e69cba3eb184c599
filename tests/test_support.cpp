#include "test_support.h"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>

#include "kv/kv_manager.h"

extern char** environ;

namespace realizar::testing {

TempDir::TempDir() {
  static std::atomic<int> counter{0};
  std::random_device rd;
  path_ = std::filesystem::temp_directory_path() /
          ("realizar-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + "-" +
           std::to_string(rd()));
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

std::filesystem::path source_dir() { return REALIZAR_SOURCE_DIR; }

const std::filesystem::path& golden_checkpoints_dir() {
  static TempDir dir;
  static const bool written = [] {
    const std::string command = "python3 " +
                                (source_dir() / "tools/reference/golden_models.py").string() +
                                " write-hf " + dir.path().string() + " > /dev/null";
    return std::system(command.c_str()) == 0;
  }();
  if (!written) throw std::runtime_error("tools/reference/golden_models.py write-hf failed");
  return dir.path();
}

std::filesystem::path convert_golden_checkpoint(const TempDir& dir, const std::string& name,
                                                const std::string& type) {
  const auto out = dir / (name + "-" + type + ".gguf");
  const auto result = run_apr({"convert", (golden_checkpoints_dir() / name).string(), "-o",
                               out.string(), "--type", type});
  if (result.exit_code != 0) throw std::runtime_error("apr convert failed: " + result.err);
  return out;
}

double relative_max_error(const std::vector<float>& got, const std::vector<float>& want) {
  EXPECT_EQ(got.size(), want.size());
  double max_diff = 0.0, max_ref = 0.0;
  for (size_t i = 0; i < want.size() && i < got.size(); ++i) {
    if (std::isnan(got[i])) return INFINITY;
    max_diff = std::max(max_diff, std::abs(static_cast<double>(got[i]) - want[i]));
    max_ref = std::max(max_ref, std::abs(static_cast<double>(want[i])));
  }
  return max_diff / max_ref;
}

int32_t argmax(const float* logits, int64_t n) {
  return static_cast<int32_t>(std::max_element(logits, logits + n) - logits);
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path.string());
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

void write_file(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

CommandResult run_apr(const std::vector<std::string>& args) {
  TempDir scratch;
  const std::string out_path = (scratch / "stdout").string();
  const std::string err_path = (scratch / "stderr").string();

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);

  std::vector<std::string> argv_storage = {REALIZAR_APR};
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& arg : argv_storage) argv.push_back(arg.data());
  argv.push_back(nullptr);

  pid_t pid = 0;
  int rc = posix_spawn(&pid, REALIZAR_APR, &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw std::runtime_error("cannot start apr");
  int status = 0;
  waitpid(pid, &status, 0);
  int exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return {exit_code, read_file(out_path), read_file(err_path)};
}

BackendOptions cache_options(int64_t cache_tokens, int threads) {
  BackendOptions options;
  options.cache_slots = (cache_tokens + kKvBlockSize - 1) / kKvBlockSize * kKvBlockSize;
  options.max_sequence_length = cache_tokens;
  options.threads = threads;
  return options;
}

std::optional<std::filesystem::path> real_model(const std::string& name) {
  const std::string command = (source_dir() / "tools/fetch_models.sh").string() + " " + name;
  std::FILE* pipe = popen(command.c_str(), "r");
  std::string out;
  int status = -1;
  if (pipe != nullptr) {
    char buffer[4096];
    size_t n = 0;
    while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) out.append(buffer, n);
    status = pclose(pipe);
  }
  while (!out.empty() && out.back() == '\n') out.pop_back();
  if (status == 0 && !out.empty()) return std::filesystem::path(out);
  const char* offline = std::getenv("REALIZAR_OFFLINE");
  if (offline == nullptr || std::string(offline) != "1") {
    ADD_FAILURE() << "tools/fetch_models.sh " << name << " failed (status " << status
                  << "); set REALIZAR_OFFLINE=1 to skip the real-model tests";
  }
  return std::nullopt;
}

}  // namespace realizar::testing
