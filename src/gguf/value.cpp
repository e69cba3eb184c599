// Metadata values: type names, construction of arrays, display and JSON forms.
#include <fmt/format.h>

#include <array>
#include <nlohmann/json.hpp>

#include "realizar/error.h"
#include "realizar/gguf.h"

namespace realizar::gguf {
namespace {

constexpr std::array<std::string_view, 13> kTypeNames = {
    "UINT8",  "INT8",   "UINT16", "INT16", "UINT32", "INT32",  "FLOAT32",
    "BOOL",   "STRING", "ARRAY",  "UINT64", "INT64", "FLOAT64",
};

// Replaces each byte that does not start or continue a valid UTF-8 sequence with U+FFFD, so the
// JSON library (which requires UTF-8) can output any GGUF string.
std::string valid_utf8(const std::string& text) {
  std::string result;
  result.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    const auto lead = static_cast<unsigned char>(text[i]);
    size_t length = lead < 0x80 ? 1 : (lead >> 5) == 0x6 ? 2 : (lead >> 4) == 0xE ? 3
                                    : (lead >> 3) == 0x1E ? 4 : 0;
    bool valid = length > 0 && i + length <= text.size();
    for (size_t k = 1; valid && k < length; ++k) {
      valid = (static_cast<unsigned char>(text[i + k]) >> 6) == 0x2;
    }
    if (valid && length > 1) {
      // Reject overlong forms, surrogates and code points above U+10FFFF.
      uint32_t code = lead & (0x7F >> length);
      for (size_t k = 1; k < length; ++k) code = (code << 6) | (text[i + k] & 0x3F);
      constexpr uint32_t kMinimum[] = {0, 0, 0x80, 0x800, 0x10000};
      valid = code >= kMinimum[length] && code <= 0x10FFFF && (code < 0xD800 || code > 0xDFFF);
    }
    if (valid) {
      result.append(text, i, length);
      i += length;
    } else {
      result += "\xEF\xBF\xBD";
      i += 1;
    }
  }
  return result;
}

}  // namespace

std::string_view value_type_name(ValueType type) {
  const auto id = static_cast<uint32_t>(type);
  return id < kTypeNames.size() ? kTypeNames[id] : "unknown";
}

std::optional<ValueType> value_type_from_id(uint32_t id) {
  if (id >= kTypeNames.size()) return std::nullopt;
  return static_cast<ValueType>(id);
}

namespace detail {
void fail_wrong_type(ValueType actual, ValueType expected) {
  fail("value is {}, not {}", value_type_name(actual), value_type_name(expected));
}
}  // namespace detail

Value Value::array(ValueType element_type, std::vector<Value> elements) {
  for (size_t i = 0; i < elements.size(); ++i) {
    if (elements[i].type() != element_type) {
      fail("array element {} is {} in an array of {}", i, value_type_name(elements[i].type()),
           value_type_name(element_type));
    }
  }
  return Value(Array{element_type, std::move(elements)});
}

bool Array::operator==(const Array& other) const {
  return element_type == other.element_type && elements == other.elements;
}

bool is_integer_type(ValueType type) {
  switch (type) {
    case ValueType::FLOAT32:
    case ValueType::FLOAT64:
    case ValueType::BOOL:
    case ValueType::STRING:
    case ValueType::ARRAY:
      return false;
    default:
      return true;
  }
}

std::string Value::to_string(size_t max_elements) const {
  return std::visit(
      [max_elements](const auto& held) -> std::string {
        using T = std::decay_t<decltype(held)>;
        if constexpr (std::is_same_v<T, std::string>) {
          return fmt::format("\"{}\"", held);
        } else if constexpr (std::is_same_v<T, Array>) {
          std::string text = "[";
          const size_t shown = std::min(held.elements.size(), max_elements);
          for (size_t i = 0; i < shown; ++i) {
            if (i > 0) text += ", ";
            text += held.elements[i].to_string(max_elements);
          }
          if (shown < held.elements.size()) {
            text += fmt::format("{}... ({} elements)", shown > 0 ? ", " : "", held.elements.size());
          }
          return text + "]";
        } else if constexpr (std::is_same_v<T, bool>) {
          return held ? "true" : "false";
        } else if constexpr (std::is_same_v<T, uint8_t> || std::is_same_v<T, int8_t>) {
          return fmt::format("{}", static_cast<int>(held));  // a number, not a character
        } else {
          return fmt::format("{}", held);
        }
      },
      storage_);
}

nlohmann::json Value::to_json() const {
  return std::visit(
      [](const auto& held) -> nlohmann::json {
        using T = std::decay_t<decltype(held)>;
        if constexpr (std::is_same_v<T, std::string>) {
          return valid_utf8(held);
        } else if constexpr (std::is_same_v<T, Array>) {
          nlohmann::json list = nlohmann::json::array();
          for (const Value& element : held.elements) list.push_back(element.to_json());
          return list;
        } else {
          return held;
        }
      },
      storage_);
}

}  // namespace realizar::gguf
