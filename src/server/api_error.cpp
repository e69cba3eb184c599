#include "server/api_error.h"

namespace realizar::server {

ApiError bad_request(const std::string& message, const std::string& param, const std::string& code) {
  return ApiError(400, "invalid_request_error", message, param, code);
}

ApiError unavailable(const std::string& message, const std::string& code) {
  return ApiError(503, "unavailable_error", message, {}, code);
}

ApiError from_request_error(const RequestError& error, const std::string& param) {
  switch (error.code()) {
    case RequestError::Code::InvalidRequest:
      return bad_request(error.what());
    case RequestError::Code::ContextLengthExceeded:
      return bad_request(error.what(), param, "context_length_exceeded");
    case RequestError::Code::QueueFull: {
      ApiError e = unavailable(error.what(), "queue_full");
      e.retry_after = 1;
      return e;
    }
    case RequestError::Code::ShuttingDown:
      return unavailable(error.what(), "shutting_down");
  }
  return ApiError(500, "server_error", fmt::format("unknown request error code {}", static_cast<int>(error.code())));
}

nlohmann::json openai_error_body(const ApiError& error) {
  const auto or_null = [](const std::string& s) { return s.empty() ? nlohmann::json() : nlohmann::json(s); };
  return {{"error",
           {{"message", error.what()}, {"type", error.type}, {"param", or_null(error.param)}, {"code", or_null(error.code)}}}};
}

nlohmann::json ollama_error_body(const ApiError& error) { return {{"error", error.what()}}; }

std::string to_wire(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace realizar::server
