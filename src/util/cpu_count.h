// How many CPUs this process may keep busy: the default thread count of every command.
#pragma once

#include <optional>
#include <set>
#include <string_view>

namespace realizar {

// The CPUs in this process's affinity mask (sched_getaffinity); empty when it cannot be read.
std::set<int> allowed_cpus();

// The CPU limit a cgroup v2 `cpu.max` file sets ("QUOTA PERIOD" in microseconds, or "max PERIOD"
// for none; Linux, Documentation/admin-guide/cgroup-v2.rst): ceil(QUOTA / PERIOD), at least 1.
// nullopt for "max" and for text that is not such a line.
std::optional<int> cgroup_cpu_limit(std::string_view cpu_max);

// The smallest limit of the cgroup v2 `cpu.max` files from this process's cgroup
// (/proc/self/cgroup) up to the root of /sys/fs/cgroup, as a container started with --cpus N
// has; nullopt when none limits it or cgroup v2 is not mounted.
std::optional<int> process_cpu_limit();

// The affinity mask's size capped by process_cpu_limit(): what `nproc` prints. At least 1;
// std::thread::hardware_concurrency() when the mask cannot be read.
int usable_cpu_count();

}  // namespace realizar
