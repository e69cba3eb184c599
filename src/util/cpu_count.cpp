#include "util/cpu_count.h"

#include <sched.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

namespace realizar {
namespace {

std::optional<long long> parse_positive(std::string_view text) {
  long long value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc{} || end != text.data() + text.size() || value <= 0) return std::nullopt;
  return value;
}

// This process's cgroup v2 path ("0::/PATH" in /proc/self/cgroup), relative to the mount.
std::optional<std::string> own_cgroup() {
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("0::", 0) == 0) return line.substr(3);
  }
  return std::nullopt;
}

}  // namespace

std::set<int> allowed_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::set<int> cpus;
  if (sched_getaffinity(0, sizeof set, &set) != 0) return cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) cpus.insert(cpu);
  }
  return cpus;
}

std::optional<int> cgroup_cpu_limit(std::string_view cpu_max) {
  while (!cpu_max.empty() && (cpu_max.back() == '\n' || cpu_max.back() == ' ')) cpu_max.remove_suffix(1);
  const size_t space = cpu_max.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  const std::optional<long long> period = parse_positive(cpu_max.substr(space + 1));
  if (!period || cpu_max.substr(0, space) == "max") return std::nullopt;
  const std::optional<long long> quota = parse_positive(cpu_max.substr(0, space));
  if (!quota) return std::nullopt;
  return static_cast<int>(std::max<long long>(1, (*quota + *period - 1) / *period));
}

std::optional<int> process_cpu_limit() {
  const std::optional<std::string> cgroup = own_cgroup();
  if (!cgroup) return std::nullopt;
  const std::filesystem::path root = "/sys/fs/cgroup";
  std::optional<int> limit;
  for (std::filesystem::path dir = root / std::filesystem::path(*cgroup).relative_path();;
       dir = dir.parent_path()) {
    std::ifstream in(dir / "cpu.max");
    std::string line;
    if (std::getline(in, line)) {
      const std::optional<int> here = cgroup_cpu_limit(line);
      if (here) limit = limit ? std::min(*limit, *here) : *here;
    }
    if (dir == root || dir.parent_path() == dir) break;
  }
  return limit;
}

int usable_cpu_count() {
  const std::set<int> cpus = allowed_cpus();
  int count = cpus.empty() ? static_cast<int>(std::thread::hardware_concurrency()) : static_cast<int>(cpus.size());
  if (const std::optional<int> limit = process_cpu_limit()) count = std::min(count, *limit);
  return std::max(count, 1);
}

}  // namespace realizar
