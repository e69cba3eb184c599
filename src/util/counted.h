// "1 thread", "2 threads": a count and its noun in the plural it takes (English nouns whose
// plural adds "s", which is every noun the CLI counts this way).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <fmt/format.h>

namespace realizar {

inline std::string counted(int64_t n, std::string_view noun) {
  return fmt::format("{} {}{}", n, noun, n == 1 ? "" : "s");
}

}  // namespace realizar
