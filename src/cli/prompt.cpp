#include "cli/prompt.h"

#include <cstdio>

#include "realizar/chat_template.h"

namespace realizar::cli {

void add_chat_options(CLI::App& app, ChatArgs& args) {
  app.add_flag("--chat", args.chat, "wrap the prompt in the model's chat template");
  app.add_option("--system", args.system, "system message (with --chat)");
  app.add_option("--chat-template", args.template_name,
                 "use this chat template instead of the model's")
      ->check(CLI::IsMember(chat_template_names()));
}

std::vector<int32_t> tokenize_prompt(const Tokenizer& tokenizer, const std::string& text,
                                     const ChatArgs& chat) {
  if (!chat.chat) return tokenizer.encode(text, /*add_special=*/true, /*parse_special=*/false);

  std::vector<ChatMessage> messages;
  if (!chat.system.empty()) messages.push_back({"system", chat.system});
  messages.push_back({"user", text});
  ChatSpecialTokens special;
  if (auto bos = tokenizer.bos()) special.bos = tokenizer.token_text(*bos);
  if (auto eos = tokenizer.eos()) special.eos = tokenizer.token_text(*eos);
  const ChatRender render =
      render_chat(tokenizer.spec().chat_template.value_or(""), messages,
                  /*add_generation_prompt=*/true, special, chat.template_name);
  if (!render.warning.empty()) std::fprintf(stderr, "apr: warning: %s\n", render.warning.c_str());

  // Templates such as LLaMA-2's write "<s>" themselves; adding BOS again would double it.
  const bool template_wrote_bos = !special.bos.empty() && render.text.starts_with(special.bos);
  return tokenizer.encode(render.text, /*add_special=*/!template_wrote_bos,
                          /*parse_special=*/true);
}

}  // namespace realizar::cli
