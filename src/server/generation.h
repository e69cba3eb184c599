// What every generating endpoint (OpenAI chat and completions, Ollama chat and generate) hands
// the HTTP layer: the engine request parsed from its body, and the object that shapes the
// engine's events into that endpoint's wire format, streamed or whole.
#pragma once

#include <nlohmann/json.hpp>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "realizar/chat_template.h"
#include "realizar/engine.h"
#include "realizar/tokenizer.h"
#include "server/api_error.h"

namespace realizar::server {

// What request parsers need to know about the served model.
struct ModelContext {
  const Tokenizer& tokenizer;
  int64_t context_length;                      // per sequence: prompt and output
  std::string alias;                           // the model name responses carry
  std::optional<std::string> chat_template;    // --chat-template NAME overrides the model's
};

// A finished request, for a response that is sent whole.
struct Outcome {
  std::string text;
  std::vector<GeneratedToken> tokens;
  FinishReason finish = FinishReason::None;
  std::string error;  // finish == Error: what went wrong
  RequestStats stats;

  void add(const RequestEvent& event);  // appends an event's text and tokens; keeps the final state
};

// The finish reason as OpenAI's finish_reason and Ollama's done_reason spell it ("stop",
// "length"); a request that ended otherwise has none: a 500 ApiError naming `api`.
const char* wire_finish_reason(FinishReason reason, std::string_view api);

class ResponseShape {
 public:
  virtual ~ResponseShape() = default;

  // The Content-Type of a streamed response (text/event-stream, application/x-ndjson).
  virtual std::string stream_content_type() const = 0;
  // The bytes that stream one event; empty when there is nothing to send. An event that ends
  // the request (finish Stop or Length) also ends the stream (OpenAI's "data: [DONE]").
  virtual std::string stream_event(const RequestEvent& event) = 0;
  // The bytes that end a stream whose request failed after it began (an engine error, shutdown).
  virtual std::string stream_error(const ApiError& error) = 0;
  // The body of a response sent whole (finish Stop or Length).
  virtual nlohmann::json body(const Outcome& outcome) = 0;
  // An error in this API's shape.
  virtual nlohmann::json error_body(const ApiError& error) const = 0;
  // The response id for logs ("chatcmpl-…"); empty when the API has none.
  virtual std::string id() const = 0;
};

// A parsed generation request.
struct Generation {
  Request request;
  bool stream = false;
  std::string prompt_field;              // the field holding the prompt, named in context errors
  std::unique_ptr<ResponseShape> shape;
  // Set when the request asks for nothing to be generated (Ollama's empty prompt, which only
  // loads the model): the body to answer with at once.
  std::optional<nlohmann::json> immediate;
};

// Checks a prompt against the context before submission, as the engine would, so a too-long
// prompt is refused with the field named even when the request also sets a smaller per-request
// context (Ollama's num_ctx). Throws a 400 context_length_exceeded ApiError naming both counts.
void check_prompt_fits(size_t prompt_tokens, int64_t context_length, const std::string& field);

// A random seed for a request that sent none (OpenAI's: unseeded requests differ).
uint64_t random_seed();

// Parses a chat message list (OpenAI's and Ollama's share it): a non-empty array of objects with
// a role (system, developer (read as system), user, assistant, tool) and a content that is a
// string, null, or (when `allow_parts`) an array of {"type": "text", "text": ...} parts. Throws
// a 400 ApiError naming the message at fault (unknown role, image parts, wrong types).
std::vector<ChatMessage> parse_chat_messages(const nlohmann::json& messages, const std::string& field,
                                             bool allow_parts);

// A chat prompt rendered with the model's template; template errors (LLaMA-2's alternation
// rule) become a 400 ApiError naming `field`.
std::vector<int32_t> render_chat_prompt(const ModelContext& model, const std::vector<ChatMessage>& messages,
                                        const std::string& field);

// A fresh response id: prefix and 24 random hex digits ("chatcmpl-5f0c…").
std::string random_id(std::string_view prefix);

}  // namespace realizar::server
