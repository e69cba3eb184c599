#include "chat/conversation.h"

#include <cstdio>
#include <fstream>
#include <sstream>
#include <system_error>

#include <nlohmann/json.hpp>

#include "realizar/error.h"

namespace realizar {

using nlohmann::json;

void Conversation::add(std::string role, std::string content) {
  if (role != "user" && role != "assistant") {
    fail("a chat message's role must be user or assistant, got '{}'", role);
  }
  turns_.push_back({std::move(role), std::move(content)});
}

void Conversation::remove_last() {
  if (!turns_.empty()) turns_.pop_back();
}

std::vector<ChatMessage> Conversation::messages() const {
  std::vector<ChatMessage> all;
  all.reserve(turns_.size() + 1);
  if (!system_.empty()) all.push_back({"system", system_});
  all.insert(all.end(), turns_.begin(), turns_.end());
  return all;
}

int64_t Conversation::turn_count() const {
  int64_t turns = 0;
  for (size_t i = 0; i < turns_.size(); ++i) {
    if (i == 0 || turns_[i].role == "user") ++turns;
  }
  return turns;
}

int64_t Conversation::drop_oldest_turn() {
  if (turns_.empty()) return 0;
  size_t end = 1;
  while (end < turns_.size() && turns_[end].role != "user") ++end;
  turns_.erase(turns_.begin(), turns_.begin() + static_cast<std::ptrdiff_t>(end));
  return static_cast<int64_t>(end);
}

// ---- JSON ----------------------------------------------------------------------------------------

std::string conversation_to_json(const Conversation& conversation) {
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();  // "role" before "content", as OpenAI writes them
  for (const ChatMessage& m : conversation.messages()) {
    messages.push_back({{"role", m.role}, {"content", m.content}});
  }
  // JSON strings hold UTF-8 only; replacing bad bytes would change what is saved.
  for (size_t i = 0; i < messages.size(); ++i) {
    try {
      (void)messages[i].dump();
    } catch (const nlohmann::ordered_json::type_error&) {
      fail("messages[{}] ({}) is not valid UTF-8 and cannot be saved as JSON", i,
           messages[i]["role"].get<std::string>());
    }
  }
  return messages.dump(2, ' ', /*ensure_ascii=*/false) + "\n";
}

namespace {

// nlohmann's messages start with "[json.exception.parse_error.101] "; the rest reads well.
std::string without_exception_tag(const char* what) {
  std::string message = what;
  const size_t end = message.find("] ");
  if (!message.empty() && message[0] == '[' && end != std::string::npos) message.erase(0, end + 2);
  return message;
}

const json& messages_array(const json& document, const std::string& source) {
  if (document.is_array()) return document;
  if (document.is_object() && document.contains("messages") && document["messages"].is_array()) {
    return document["messages"];
  }
  fail("{}: expected a JSON array of messages, or an object with a \"messages\" array", source);
}

}  // namespace

Conversation conversation_from_json(std::string_view text, const std::string& source) {
  json document;
  try {
    document = json::parse(text);
  } catch (const json::parse_error& e) {
    fail("{}: not valid JSON: {}", source, without_exception_tag(e.what()));
  }
  const json& messages = messages_array(document, source);
  Conversation conversation;
  for (size_t i = 0; i < messages.size(); ++i) {
    const json& m = messages[i];
    if (!m.is_object()) fail("{}: messages[{}]: expected an object with \"role\" and \"content\"", source, i);
    if (!m.contains("role") || !m["role"].is_string()) fail("{}: messages[{}]: \"role\" must be a string", source, i);
    if (!m.contains("content") || !m["content"].is_string()) {
      fail("{}: messages[{}]: \"content\" must be a string", source, i);
    }
    const std::string role = m["role"];
    std::string content = m["content"];
    if (role == "system") {
      if (i != 0) fail("{}: messages[{}]: a system message may only come first", source, i);
      conversation.set_system(std::move(content));
    } else if (role == "user" || role == "assistant") {
      conversation.add(role, std::move(content));
    } else {
      fail("{}: messages[{}]: unknown role '{}' (expected system, user or assistant)", source, i, role);
    }
  }
  return conversation;
}

void save_conversation(const Conversation& conversation, const std::filesystem::path& path) {
  const std::string text = conversation_to_json(conversation);
  std::filesystem::path partial = path;
  partial += ".partial";
  {
    std::ofstream out(partial, std::ios::binary | std::ios::trunc);
    if (!out) fail("cannot write {}: {}", path.string(), std::generic_category().message(errno));
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    out.close();
    if (!out) {
      std::error_code ignored;
      std::filesystem::remove(partial, ignored);
      fail("cannot write {}", path.string());
    }
  }
  std::error_code error;
  std::filesystem::rename(partial, path, error);
  if (error) {
    std::error_code ignored;
    std::filesystem::remove(partial, ignored);
    fail("cannot write {}: {}", path.string(), error.message());
  }
}

Conversation load_conversation(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot read {}: {}", path.string(), std::generic_category().message(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) fail("cannot read {}", path.string());
  return conversation_from_json(text.str(), path.string());
}

// ---- fitting the context -------------------------------------------------------------------------

ContextFit fit_to_context(Conversation& conversation, const PromptRenderer& render, int64_t max_prompt_tokens) {
  const auto tokens_of = [](const ChatPrompt& p) { return static_cast<int64_t>(p.tokens.size()); };
  ContextFit fit;
  fit.prompt = render(conversation.messages());
  if (tokens_of(fit.prompt) <= max_prompt_tokens) {
    fit.fits = true;
    return fit;
  }
  Conversation newest = conversation;
  while (newest.turn_count() > 1) newest.drop_oldest_turn();
  ChatPrompt minimal = render(newest.messages());
  if (tokens_of(minimal) > max_prompt_tokens) {
    fit.prompt = std::move(minimal);
    return fit;
  }
  // Turn by turn rather than straight to the answer: each dropped turn is reported with its size.
  while (tokens_of(fit.prompt) > max_prompt_tokens) {
    const int64_t before = tokens_of(fit.prompt);
    conversation.drop_oldest_turn();
    fit.prompt = render(conversation.messages());
    fit.dropped_tokens.push_back(before - tokens_of(fit.prompt));
  }
  fit.fits = true;
  return fit;
}

}  // namespace realizar
