// Errors a request gets back, with their HTTP status, in the two wire shapes the server speaks:
// OpenAI's error object ({"error": {"message", "type", "param", "code"}}) on /v1 and everything
// else, Ollama's ({"error": "message"}) on /api.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <stdexcept>
#include <string>

#include "realizar/engine.h"

namespace realizar::server {

class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string type, const std::string& message, std::string param = {},
           std::string code = {})
      : std::runtime_error(message), status(status), type(std::move(type)),
        param(std::move(param)), code(std::move(code)) {}

  int status;
  std::string type;                // OpenAI's error type: invalid_request_error, ...
  std::string param;               // the request field at fault; empty: none
  std::string code;                // machine-readable code (context_length_exceeded, ...); empty: none
  std::optional<int> retry_after;  // seconds, sent as Retry-After (503 when the queue is full)
};

// 400 invalid_request_error naming the field.
ApiError bad_request(const std::string& message, const std::string& param = {},
                     const std::string& code = {});
// 503 unavailable_error with a code (loading, shutting_down, queue_full).
ApiError unavailable(const std::string& message, const std::string& code);

// The HTTP answer to Engine::submit's refusal: InvalidRequest → 400, ContextLengthExceeded →
// 400 context_length_exceeded, QueueFull → 503 with Retry-After, ShuttingDown → 503. `param` is
// the request field that holds the prompt ("messages", "prompt").
ApiError from_request_error(const RequestError& error, const std::string& param);

nlohmann::json openai_error_body(const ApiError& error);
nlohmann::json ollama_error_body(const ApiError& error);

// JSON text for the wire: invalid UTF-8 (a token piece may end inside a character) is replaced by
// U+FFFD instead of making the dump throw.
std::string to_wire(const nlohmann::json& value);

}  // namespace realizar::server
