// Errors raised by the engine: one exception type, so front ends catch a single thing and print
// its message. Messages name the file, the offset or the item concerned and what is wrong.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace realizar {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// Throws realizar::Error with a fmt-formatted message.
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace realizar
