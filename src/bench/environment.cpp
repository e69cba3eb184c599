#include "bench/environment.h"

#include <sys/utsname.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <fstream>
#include <map>
#include <thread>

#include <fmt/format.h>

#include "bench/build_info.h"
#include "bench/gpu_environment.h"
#include "realizar/tensor_type.h"
#include "util/sha256.h"

namespace realizar::bench {
namespace {

// The value of the first "key : value" line of a /proc file whose key is `key`.
std::string proc_field(const char* file, std::string_view key) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    name.erase(name.find_last_not_of(" \t") + 1);
    if (name != key) continue;
    const size_t start = line.find_first_not_of(" \t", colon + 1);
    return start == std::string::npos ? "" : line.substr(start);
  }
  return "";
}

nlohmann::json memory_bytes() {
  const std::string kb = proc_field("/proc/meminfo", "MemTotal");  // "131072000 kB"
  if (kb.empty()) return nullptr;
  return static_cast<uint64_t>(std::stoull(kb)) * 1024;
}

std::string operating_system() {
  utsname u{};
  if (uname(&u) != 0) return "unknown";
  return fmt::format("{} {} {}", u.sysname, u.release, u.machine);
}

std::string utc_now() {
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&now, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return text;
}

// SHA-256 of the file's first `bytes` bytes, read in pieces; null when the file cannot be read.
nlohmann::json header_sha256(const std::filesystem::path& path, uint64_t bytes) {
  std::ifstream in(path, std::ios::binary);
  Sha256 digest;
  std::vector<char> buffer(1 << 20);
  while (bytes > 0 && in) {
    const auto want = static_cast<std::streamsize>(std::min<uint64_t>(bytes, buffer.size()));
    in.read(buffer.data(), want);
    if (in.gcount() != want) return nullptr;
    digest.update(buffer.data(), static_cast<size_t>(want));
    bytes -= static_cast<uint64_t>(want);
  }
  return digest.hex_digest();
}

}  // namespace

std::string cpu_model_name() {
  const std::string name = proc_field("/proc/cpuinfo", "model name");
  return name.empty() ? "unknown" : name;
}

nlohmann::json describe_environment() {
  return {
      {"realizar",
       {{"version", kVersion},
        {"git_commit", kGitCommit},
        {"git_dirty", kGitDirty},
        {"build_type", kBuildType},
        {"compiler", kCompiler},
        {"flags", kCompilerFlags},
        {"options", kBuildOptions},
        {"cuda_architectures", kCudaArchitectures}}},
      {"host",
       {{"cpu_model", cpu_model_name()},
        {"logical_cpus", std::thread::hardware_concurrency()},
        {"memory_bytes", memory_bytes()},
        {"os", operating_system()}}},
      {"gpu", describe_gpus()},
      {"date", utc_now()},
  };
}

nlohmann::json describe_model(const gguf::File& file, const ModelConfig& config) {
  struct TypeShare {
    uint64_t tensors = 0;
    uint64_t bytes = 0;
  };
  std::map<std::string, TypeShare> by_type;
  uint64_t parameters = 0, tensor_bytes = 0;
  for (const gguf::TensorInfo& t : file.tensors()) {
    TypeShare& share = by_type[std::string(tensor_type_name(t.type))];
    ++share.tensors;
    share.bytes += t.n_bytes;
    parameters += t.n_elements;
    tensor_bytes += t.n_bytes;
  }
  std::vector<std::pair<std::string, TypeShare>> mix(by_type.begin(), by_type.end());
  std::stable_sort(mix.begin(), mix.end(),
                   [](const auto& a, const auto& b) { return a.second.bytes > b.second.bytes; });
  nlohmann::json quant_mix = nlohmann::json::array();
  for (const auto& [type, share] : mix) {
    quant_mix.push_back({{"type", type}, {"tensors", share.tensors}, {"bytes", share.bytes}});
  }
  const std::string general_name = file.get_string_or("general.name", "");
  nlohmann::json sha = header_sha256(file.path(), file.data_offset());
  return {{"path", file.path().string()},
          {"file_name", file.path().filename().string()},
          {"file_size_bytes", file.file_size()},
          {"architecture", config.architecture_name},
          {"name", general_name.empty() ? nlohmann::json(nullptr) : nlohmann::json(general_name)},
          {"parameters", parameters},
          {"tensor_bytes", tensor_bytes},
          {"quant_mix", quant_mix},
          {"header_sha256", sha}};
}

}  // namespace realizar::bench
