#include "server/json_fields.h"

#include <cmath>

#include "server/api_error.h"

namespace realizar::server {

using nlohmann::json;

json parse_json_object(std::string_view body) {
  // The callback sees every value as it starts; refusing deep nesting keeps a hostile body of
  // a million '[' from exhausting memory or the stack.
  const json::parser_callback_t depth_limit = [](int depth, json::parse_event_t, json&) {
    if (depth > kMaxJsonDepth) {
      throw bad_request(fmt::format("the request body nests deeper than {} levels", kMaxJsonDepth));
    }
    return true;
  };
  json value;
  try {
    value = json::parse(body.begin(), body.end(), depth_limit);
  } catch (const json::parse_error& e) {
    throw bad_request(fmt::format("the request body is not valid JSON: {}", e.what()));
  }
  if (!value.is_object()) {
    throw bad_request(fmt::format("the request body must be a JSON object, got {}", describe_json(value)));
  }
  return value;
}

const char* json_type_name(const json& value) {
  switch (value.type()) {
    case json::value_t::null: return "null";
    case json::value_t::object: return "object";
    case json::value_t::array: return "array";
    case json::value_t::string: return "string";
    case json::value_t::boolean: return "boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float: return "number";
    case json::value_t::binary: return "binary";
    case json::value_t::discarded: return "discarded";
  }
  return "unknown";
}

std::string describe_json(const json& value) {
  switch (value.type()) {
    case json::value_t::object: return "an object";
    case json::value_t::array: return "an array";
    case json::value_t::string: return "a string";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float: return value.dump();
    case json::value_t::null:
    case json::value_t::binary:
    case json::value_t::discarded: break;
  }
  return json_type_name(value);
}

Fields::Fields(const json& object, std::string prefix) : object_(&object), prefix_(std::move(prefix)) {}

const json* Fields::find(std::string_view key) const {
  const auto it = object_->find(key);
  if (it == object_->end() || it->is_null()) return nullptr;
  return &*it;
}

void Fields::wrong_type(std::string_view key, const char* wanted, const json& value) const {
  throw bad_request(fmt::format("'{}' must be {}, got {}", name(key), wanted, describe_json(value)), name(key));
}

std::optional<std::string> Fields::string(std::string_view key) const {
  const json* v = find(key);
  if (!v) return std::nullopt;
  if (!v->is_string()) wrong_type(key, "a string", *v);
  return v->get<std::string>();
}

std::optional<bool> Fields::boolean(std::string_view key) const {
  const json* v = find(key);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) wrong_type(key, "a boolean", *v);
  return v->get<bool>();
}

std::optional<int64_t> Fields::integer(std::string_view key, int64_t min, int64_t max) const {
  const json* v = find(key);
  if (!v) return std::nullopt;
  int64_t n = 0;
  if (v->is_number_integer()) {
    n = v->get<int64_t>();
  } else if (v->is_number_unsigned()) {
    const uint64_t u = v->get<uint64_t>();
    n = u > static_cast<uint64_t>(INT64_MAX) ? INT64_MAX : static_cast<int64_t>(u);
  } else if (v->is_number_float() && std::isfinite(v->get<double>()) &&
             v->get<double>() == std::trunc(v->get<double>()) && std::fabs(v->get<double>()) < 9e18) {
    n = static_cast<int64_t>(v->get<double>());
  } else {
    wrong_type(key, "an integer", *v);
  }
  if (n < min || n > max) {
    throw bad_request(fmt::format("'{}' must be between {} and {}, got {}", name(key), min, max, n), name(key));
  }
  return n;
}

std::optional<double> Fields::number(std::string_view key, double min, double max) const {
  const json* v = find(key);
  if (!v) return std::nullopt;
  if (!v->is_number()) wrong_type(key, "a number", *v);
  const double x = v->get<double>();
  if (!std::isfinite(x) || x < min || x > max) {
    throw bad_request(fmt::format("'{}' must be between {} and {}, got {}", name(key), min, max, x), name(key));
  }
  return x;
}

std::optional<Fields> Fields::object(std::string_view key) const {
  const json* v = find(key);
  if (!v) return std::nullopt;
  if (!v->is_object()) wrong_type(key, "an object", *v);
  return Fields(*v, name(key) + ".");
}

std::vector<std::string> Fields::string_or_strings(std::string_view key, size_t max_count) const {
  const json* v = find(key);
  if (!v) return {};
  if (v->is_string()) return {v->get<std::string>()};
  if (!v->is_array()) wrong_type(key, "a string or an array of strings", *v);
  if (v->size() > max_count) {
    throw bad_request(fmt::format("'{}' may hold at most {} strings, got {}", name(key), max_count, v->size()), name(key));
  }
  std::vector<std::string> out;
  for (const json& item : *v) {
    if (!item.is_string()) wrong_type(key, "a string or an array of strings", item);
    out.push_back(item.get<std::string>());
  }
  return out;
}

}  // namespace realizar::server
