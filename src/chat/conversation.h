// A chat's messages for `apr chat`: an optional system message that stays first, then the
// user/assistant turns in order; dropping the oldest turns to fit a context; saving and loading
// the messages in the OpenAI chat shape. No terminal or engine here (chat_session.h drives the
// engine), so every rule is testable on its own (tests/chat_test.cpp).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "realizar/chat_template.h"
#include "realizar/prompt.h"

namespace realizar {

class Conversation {
 public:
  Conversation() = default;
  explicit Conversation(std::string system) : system_(std::move(system)) {}

  // The system message; "" when there is none.
  const std::string& system() const { return system_; }
  void set_system(std::string text) { system_ = std::move(text); }

  // Appends a message after the others. Throws realizar::Error for a role other than "user" or
  // "assistant" (the system message is set_system's).
  void add(std::string role, std::string content);
  // Drops the newest message (no-op when there is none).
  void remove_last();
  // Drops every message but the system one.
  void clear() { turns_.clear(); }

  // The messages after the system message.
  const std::vector<ChatMessage>& turns() const { return turns_; }
  // Every message as a chat template takes them: the system message first, when there is one.
  std::vector<ChatMessage> messages() const;

  // A turn is a user message with the messages that follow it up to the next user message (its
  // answer); messages before the first user message (possible in a loaded file) form one turn too.
  int64_t turn_count() const;
  // Drops the oldest turn; returns how many messages went (0 when there were none).
  int64_t drop_oldest_turn();

 private:
  std::string system_;
  std::vector<ChatMessage> turns_;
};

// The messages as JSON in the shape of an OpenAI chat request's `messages`:
// [{"role": "system"|"user"|"assistant", "content": "..."}, ...], the system message first.
std::string conversation_to_json(const Conversation& conversation);

// Reads that shape, or an object holding it under "messages" (a whole chat request). Throws
// realizar::Error naming `source` (a file name) and the message index for malformed JSON, an
// unknown role, content that is not a string, or a system message that is not the first.
Conversation conversation_from_json(std::string_view json, const std::string& source);

// conversation_to_json into `path` (written beside it, then renamed over it, so a failed write
// leaves an existing file whole). Throws realizar::Error naming the path when it cannot be written.
void save_conversation(const Conversation& conversation, const std::filesystem::path& path);
// conversation_from_json of the file; throws realizar::Error naming the path when it cannot be read.
Conversation load_conversation(const std::filesystem::path& path);

// Renders messages into a prompt (chat_prompt with the chat's template).
using PromptRenderer = std::function<ChatPrompt(std::span<const ChatMessage>)>;

struct ContextFit {
  bool fits = false;
  // fits: the prompt of the conversation after the drops; otherwise the prompt of the system
  // message and the newest turn alone, which is longer than the limit.
  ChatPrompt prompt;
  std::vector<int64_t> dropped_tokens;  // prompt tokens each dropped turn took, oldest first
};

// Drops the oldest turns of `conversation` until its prompt has at most `max_prompt_tokens`
// tokens (the context less the room kept for the answer). The system message and the newest turn
// are never dropped: when they alone exceed the limit, returns fits = false and leaves the
// conversation as it was. A dropped turn's tokens are the difference its removal made to the
// rendered prompt.
ContextFit fit_to_context(Conversation& conversation, const PromptRenderer& render, int64_t max_prompt_tokens);

}  // namespace realizar
