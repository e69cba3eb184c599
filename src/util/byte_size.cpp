#include "util/byte_size.h"

#include <array>
#include <cctype>
#include <charconv>
#include <cmath>
#include <string>

#include "realizar/error.h"

namespace realizar {
namespace {

struct Unit {
  std::string_view name;  // lower case
  double bytes;
};

constexpr double kKi = 1024.0;
constexpr std::array<Unit, 14> kUnits{{
    {"", 1}, {"b", 1},
    {"k", kKi}, {"kib", kKi}, {"kb", 1e3},
    {"m", kKi * kKi}, {"mib", kKi * kKi}, {"mb", 1e6},
    {"g", kKi * kKi * kKi}, {"gib", kKi * kKi * kKi}, {"gb", 1e9},
    {"t", kKi * kKi * kKi * kKi}, {"tib", kKi * kKi * kKi * kKi}, {"tb", 1e12},
}};

}  // namespace

int64_t parse_byte_size(std::string_view text) {
  const auto bad = [&]() -> Error {
    return Error(fmt::format("'{}' is not a size (expected a number with an optional unit: "
                             "B, KiB, MiB, GiB, TiB, KB, MB, GB, TB, K, M, G, T)", text));
  };
  double number = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), number);
  if (ec != std::errc() || end == text.data()) throw bad();
  std::string unit(end, text.data() + text.size());
  for (char& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const Unit& u : kUnits) {
    if (u.name != unit) continue;
    const double bytes = std::floor(number * u.bytes);
    if (!std::isfinite(bytes) || bytes < 1 || bytes >= 9.2e18) {
      fail("'{}' is not a size between 1 byte and 8 EiB", text);
    }
    return static_cast<int64_t>(bytes);
  }
  throw bad();
}

}  // namespace realizar
