// One chat on the serving engine, the logic of `apr chat` without its terminal: each turn renders
// the whole conversation with the model's chat template (realizar/prompt.h) and submits it, so the
// engine's prefix cache attaches what earlier turns computed and prefills only the new part; the
// oldest turns are dropped, each with a notice, when the prompt and the answer's room would not
// fit the context.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "chat/conversation.h"
#include "realizar/engine.h"

namespace realizar {

struct ChatSettings {
  GenerationOptions generation;              // for every answer (max_tokens: per answer)
  std::optional<std::string> template_name;  // overrides the model's chat template
};

struct TurnCallbacks {
  std::function<void(const ChatPrompt&)> on_prompt;   // the rendered prompt, just before it is submitted
  std::function<void(const std::string&)> on_notice;  // a dropped turn, a template warning
  std::function<void(std::string_view)> on_text;      // the answer, as it is generated
  std::function<bool()> stop_requested;               // polled while the answer comes; true stops it
};

struct TurnResult {
  std::string answer;                     // as far as it came
  FinishReason finish = FinishReason::None;  // Stop, Length or Cancelled
  RequestStats stats;                     // prompt / cached / generated tokens, TTFT, decode time
};

class ChatSession {
 public:
  // How often send() polls stop_requested while it waits for the engine.
  static constexpr std::chrono::milliseconds kStopPoll{50};

  // `system`: the first system message ("" for none). Throws realizar::Error when the answer's
  // max_tokens leave no room for a prompt in the engine's context.
  ChatSession(Engine& engine, ChatSettings settings, std::string system = "");

  Conversation& conversation() { return conversation_; }
  const Conversation& conversation() const { return conversation_; }

  // Sends `message` as the user's next turn and streams the answer through `callbacks`. The
  // answer joins the conversation; a stopped one as far as it came, and one stopped before any
  // text leaves the conversation as it was before the message. Throws realizar::Error, the
  // conversation as it was, when the message does not fit the context even with every older turn
  // dropped, the chat template refuses the conversation, or the engine refuses or fails the request.
  TurnResult send(std::string message, const TurnCallbacks& callbacks);

  // The last answered turn (a stopped one included); nullopt before the first.
  const std::optional<TurnResult>& last_turn() const { return last_turn_; }
  // Tokens the conversation takes as rendered now, without the next turn's header (0 when empty).
  int64_t context_used() const;
  int64_t context_length() const { return engine_.context_length(); }

  // The conversation `messages` as this chat renders them.
  ChatPrompt render(std::span<const ChatMessage> messages, bool add_generation_prompt = true) const;

 private:
  // Adds the message, fits the context, submits and streams the answer (send() keeps or undoes it).
  TurnResult answer(std::string message, const TurnCallbacks& callbacks);
  // Reads the request to its end, cancelling it once stop_requested says so.
  TurnResult stream_answer(RequestStream& stream, const TurnCallbacks& callbacks);

  Engine& engine_;
  ChatSettings settings_;
  Conversation conversation_;
  std::optional<TurnResult> last_turn_;
  bool warned_ = false;  // the template warning is given once
};

}  // namespace realizar
