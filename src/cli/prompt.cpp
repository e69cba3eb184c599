#include "cli/prompt.h"

#include <cstdio>

#include "realizar/chat_template.h"
#include "realizar/prompt.h"

namespace realizar::cli {

void add_chat_options(CLI::App& app, ChatArgs& args) {
  app.add_flag("--chat", args.chat, "wrap the prompt in the model's chat template");
  app.add_option("--system", args.system, "system message (with --chat)");
  add_chat_template_option(app, args.template_name);
}

void add_chat_template_option(CLI::App& app, std::optional<std::string>& template_name) {
  app.add_option("--chat-template", template_name, "use this chat template instead of the model's")
      ->check(CLI::IsMember(chat_template_names()));
}

std::vector<int32_t> tokenize_prompt(const Tokenizer& tokenizer, const std::string& text,
                                     const ChatArgs& chat) {
  if (!chat.chat) return text_prompt(tokenizer, text);
  std::vector<ChatMessage> messages;
  if (!chat.system.empty()) messages.push_back({"system", chat.system});
  messages.push_back({"user", text});
  const ChatPrompt prompt = realizar::chat_prompt(tokenizer, messages, chat.template_name);
  if (!prompt.warning.empty()) std::fprintf(stderr, "apr: warning: %s\n", prompt.warning.c_str());
  return prompt.tokens;
}

}  // namespace realizar::cli
