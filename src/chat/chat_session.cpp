#include "chat/chat_session.h"

#include "realizar/error.h"

namespace realizar {

ChatSession::ChatSession(Engine& engine, ChatSettings settings, std::string system)
    : engine_(engine), settings_(std::move(settings)), conversation_(std::move(system)) {
  if (settings_.generation.max_tokens >= engine_.context_length()) {
    fail("answers of up to {} tokens leave no room for a message in the context of {} tokens "
         "(raise --ctx or lower --max-tokens)",
         settings_.generation.max_tokens, engine_.context_length());
  }
}

ChatPrompt ChatSession::render(std::span<const ChatMessage> messages, bool add_generation_prompt) const {
  return chat_prompt(engine_.tokenizer(), messages, settings_.template_name, add_generation_prompt);
}

int64_t ChatSession::context_used() const {
  const std::vector<ChatMessage> messages = conversation_.messages();
  if (messages.empty()) return 0;
  return static_cast<int64_t>(render(messages, /*add_generation_prompt=*/false).tokens.size());
}

TurnResult ChatSession::send(std::string message, const TurnCallbacks& callbacks) {
  const Conversation before = conversation_;  // dropped turns come back too if the turn fails
  TurnResult result;
  try {
    result = answer(std::move(message), callbacks);
  } catch (const Error&) {
    conversation_ = before;
    throw;
  }
  if (result.finish == FinishReason::Cancelled && result.answer.empty()) {
    conversation_ = before;
  } else {
    conversation_.add("assistant", result.answer);
  }
  last_turn_ = result;
  return result;
}

TurnResult ChatSession::answer(std::string message, const TurnCallbacks& callbacks) {
  conversation_.add("user", std::move(message));
  const ContextFit fit = fit_to_context(
      conversation_, [this](std::span<const ChatMessage> m) { return render(m); },
      engine_.context_length() - settings_.generation.max_tokens);
  if (!fit.fits) {
    fail("the message does not fit: the prompt of {} alone takes {} tokens, which with room for an "
         "answer of {} passes the context of {} tokens (raise --ctx or lower --max-tokens)",
         conversation_.system().empty() ? "this message" : "the system message and this message",
         fit.prompt.tokens.size(), settings_.generation.max_tokens, engine_.context_length());
  }
  RequestStream stream = engine_.submit(Request{fit.prompt.tokens, settings_.generation});
  if (!fit.prompt.warning.empty() && !warned_ && callbacks.on_notice) {
    callbacks.on_notice("warning: " + fit.prompt.warning);
    warned_ = true;
  }
  for (const int64_t tokens : fit.dropped_tokens) {
    if (callbacks.on_notice) callbacks.on_notice(fmt::format("context full: dropped the oldest turn ({} tokens)", tokens));
  }
  if (callbacks.on_prompt) callbacks.on_prompt(fit.prompt);
  return stream_answer(stream, callbacks);
}

TurnResult ChatSession::stream_answer(RequestStream& stream, const TurnCallbacks& callbacks) {
  TurnResult result;
  bool cancelled = false;
  while (true) {
    if (!cancelled && callbacks.stop_requested && callbacks.stop_requested()) {
      engine_.cancel(stream.id());
      cancelled = true;
    }
    std::optional<RequestEvent> event = stream.next(kStopPoll);
    if (!event) continue;
    if (!event->text.empty()) {
      result.answer += event->text;
      if (callbacks.on_text) callbacks.on_text(event->text);
    }
    switch (event->finish) {
      case FinishReason::None:
        continue;
      case FinishReason::Stop:
      case FinishReason::Length:
      case FinishReason::Cancelled:
        result.finish = event->finish;
        result.stats = event->stats;
        return result;
      case FinishReason::Error:
        fail("the answer failed: {}", event->error);
    }
    fail("unknown finish reason {}", static_cast<int>(event->finish));
  }
}

}  // namespace realizar
