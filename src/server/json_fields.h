// Reading request bodies defensively: the body must be one JSON object (nesting bounded); each
// field is read through a getter that checks its type and range and throws a 400 ApiError naming
// the field. Absent and null fields read as nullopt; unknown fields are ignored, as OpenAI does.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace realizar::server {

// The most nested arrays/objects a body may have (a message list with content parts and tool
// schemas needs a handful; the bound keeps recursion in the JSON library shallow).
constexpr int kMaxJsonDepth = 64;

// Parses a request body. Throws a 400 ApiError for malformed JSON (with the parser's position),
// nesting deeper than kMaxJsonDepth, or a value that is not an object.
nlohmann::json parse_json_object(std::string_view body);

class Fields {
 public:
  // `object` must outlive the reader. `prefix` names nested objects in errors ("options.").
  explicit Fields(const nlohmann::json& object, std::string prefix = {});

  const nlohmann::json* find(std::string_view key) const;  // nullptr when absent or null
  bool has(std::string_view key) const { return find(key) != nullptr; }
  std::string name(std::string_view key) const { return prefix_ + std::string(key); }

  std::optional<std::string> string(std::string_view key) const;
  std::optional<bool> boolean(std::string_view key) const;
  // An integer (a number without a fractional part) in [min, max].
  std::optional<int64_t> integer(std::string_view key, int64_t min, int64_t max) const;
  // A finite number in [min, max].
  std::optional<double> number(std::string_view key, double min, double max) const;
  // A nested object, read with this one's prefix plus "key.".
  std::optional<Fields> object(std::string_view key) const;
  // A string, or an array of at most max_count strings ("stop").
  std::vector<std::string> string_or_strings(std::string_view key, size_t max_count) const;

 private:
  [[noreturn]] void wrong_type(std::string_view key, const char* wanted, const nlohmann::json& value) const;

  const nlohmann::json* object_;
  std::string prefix_;
};

// "string", "number", "object", ...: the JSON type of a value, for error messages.
const char* json_type_name(const nlohmann::json& value);
// What an error message says a wrong value was: "a string", "an array", a number as written.
std::string describe_json(const nlohmann::json& value);

}  // namespace realizar::server
