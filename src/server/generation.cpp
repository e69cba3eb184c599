#include "server/generation.h"

#include <random>

#include "realizar/prompt.h"
#include "server/json_fields.h"

namespace realizar::server {

const char* wire_finish_reason(FinishReason reason, std::string_view api) {
  switch (reason) {
    case FinishReason::Stop: return "stop";
    case FinishReason::Length: return "length";
    case FinishReason::None:
    case FinishReason::Cancelled:
    case FinishReason::Error: break;
  }
  throw ApiError(500, "server_error", fmt::format("no {} finish reason for '{}'", api, finish_reason_name(reason)));
}

void Outcome::add(const RequestEvent& event) {
  text += event.text;
  tokens.insert(tokens.end(), event.tokens.begin(), event.tokens.end());
  finish = event.finish;
  if (event.finish == FinishReason::None) return;
  error = event.error;
  stats = event.stats;
}

void check_prompt_fits(size_t prompt_tokens, int64_t context_length, const std::string& field) {
  if (static_cast<int64_t>(prompt_tokens) < context_length) return;
  throw bad_request(fmt::format("the prompt has {} tokens but the context holds {} (prompt and output)",
                                prompt_tokens, context_length),
                    field, "context_length_exceeded");
}

uint64_t random_seed() {
  thread_local std::mt19937_64 generator{std::random_device{}()};
  return generator();
}

namespace {

// The text of one message's content.
std::string message_content(const nlohmann::json& content, const std::string& where, bool allow_parts) {
  if (content.is_null()) return {};
  if (content.is_string()) return content.get<std::string>();
  if (!allow_parts || !content.is_array()) {
    throw bad_request(fmt::format("'{}.content' must be a string{}, got {}", where,
                                  allow_parts ? " or an array of content parts" : "", describe_json(content)),
                      where + ".content");
  }
  std::string text;
  for (size_t i = 0; i < content.size(); ++i) {
    const nlohmann::json& part = content[i];
    const std::string part_name = fmt::format("{}.content[{}]", where, i);
    if (!part.is_object()) {
      throw bad_request(fmt::format("'{}' must be an object, got {}", part_name, describe_json(part)), part_name);
    }
    const Fields f(part, part_name + ".");
    const std::string type = f.string("type").value_or("");
    if (type != "text") {
      throw bad_request(fmt::format("'{}.type' is '{}'; only text content parts are supported", part_name, type),
                        part_name + ".type");
    }
    text += f.string("text").value_or("");
  }
  return text;
}

}  // namespace

std::vector<ChatMessage> parse_chat_messages(const nlohmann::json& messages, const std::string& field,
                                             bool allow_parts) {
  if (!messages.is_array()) {
    throw bad_request(fmt::format("'{}' must be an array of messages, got {}", field, describe_json(messages)), field);
  }
  if (messages.empty()) throw bad_request(fmt::format("'{}' must hold at least one message", field), field);
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string where = fmt::format("{}[{}]", field, i);
    const nlohmann::json& m = messages[i];
    if (!m.is_object()) {
      throw bad_request(fmt::format("'{}' must be an object, got {}", where, describe_json(m)), where);
    }
    const Fields f(m, where + ".");
    const std::optional<std::string> role = f.string("role");
    if (!role) throw bad_request(fmt::format("'{}.role' is missing", where), where + ".role");
    ChatMessage message;
    if (*role == "system" || *role == "developer") {
      message.role = "system";
    } else if (*role == "user" || *role == "assistant" || *role == "tool") {
      message.role = *role;
    } else {
      throw bad_request(fmt::format("'{}.role' is '{}'; expected system, developer, user, assistant or tool",
                                    where, *role),
                        where + ".role");
    }
    if (const nlohmann::json* images = f.find("images"); images != nullptr && !images->empty()) {
      throw bad_request(fmt::format("'{}.images': images are not supported (the model reads text only)", where),
                        where + ".images");
    }
    const auto content = m.find("content");
    message.content = content == m.end() ? std::string() : message_content(*content, where, allow_parts);
    out.push_back(std::move(message));
  }
  return out;
}

std::vector<int32_t> render_chat_prompt(const ModelContext& model, const std::vector<ChatMessage>& messages,
                                        const std::string& field) {
  try {
    return chat_prompt(model.tokenizer, messages, model.chat_template).tokens;
  } catch (const Error& e) {
    throw bad_request(fmt::format("the messages cannot be rendered with the chat template: {}", e.what()), field);
  }
}

std::string random_id(std::string_view prefix) {
  return fmt::format("{}{:016x}{:08x}", prefix, random_seed(), static_cast<uint32_t>(random_seed()));
}

}  // namespace realizar::server
