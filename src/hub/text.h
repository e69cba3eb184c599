// ASCII case mapping for names (repositories, quant tags, file names): the hub compares them
// case-insensitively.
#pragma once

#include <algorithm>
#include <cctype>
#include <string>
#include <string_view>

namespace realizar::hub {

inline std::string ascii_lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

inline std::string ascii_upper(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return out;
}

}  // namespace realizar::hub
