#include "realizar/prompt.h"

namespace realizar {

std::vector<int32_t> text_prompt(const Tokenizer& tokenizer, std::string_view text) {
  return tokenizer.encode(text, /*add_special=*/true, /*parse_special=*/false);
}

ChatPrompt chat_prompt(const Tokenizer& tokenizer, std::span<const ChatMessage> messages,
                       const std::optional<std::string>& template_name, bool add_generation_prompt) {
  ChatSpecialTokens special;
  if (auto bos = tokenizer.bos()) special.bos = tokenizer.token_text(*bos);
  if (auto eos = tokenizer.eos()) special.eos = tokenizer.token_text(*eos);
  ChatRender render = render_chat(tokenizer.spec().chat_template.value_or(""), messages,
                                  add_generation_prompt, special, template_name);
  // Templates such as LLaMA-2's write "<s>" themselves; adding BOS again would double it.
  const bool template_wrote_bos = !special.bos.empty() && render.text.starts_with(special.bos);
  ChatPrompt prompt;
  prompt.tokens = tokenizer.encode(render.text, /*add_special=*/!template_wrote_bos, /*parse_special=*/true);
  prompt.text = std::move(render.text);
  prompt.template_name = std::move(render.template_name);
  prompt.warning = std::move(render.warning);
  return prompt;
}

}  // namespace realizar
