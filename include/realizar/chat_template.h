// Chat templates: turning a conversation into the prompt text a chat model was trained on.
// The Jinja template stored in `tokenizer.chat_template` is recognised by its distinctive text and
// rendered natively (no Jinja interpreter); renders are byte-identical to transformers'
// apply_chat_template for the families below (tests/chat_template_test.cpp checks this).
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace realizar {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant" ("tool" for the Qwen templates)
  std::string content;
};

// Texts of the tokens that templates write as `bos_token` / `eos_token`.
struct ChatSpecialTokens {
  std::string bos;
  std::string eos;
};

struct ChatRender {
  std::string text;           // the prompt
  std::string template_name;  // the template used (one of chat_template_names())
  std::string warning;        // non-empty when the template was not recognised and ChatML was used
};

// Names accepted by render_chat's override (the CLI's --chat-template NAME):
// chatml, qwen2.5, qwen3, llama2, llama3, zephyr (also TinyLlama), deepseek-coder, smollm2.
const std::vector<std::string>& chat_template_names();

// The name of the known template that `template_source` (Jinja text) is, or nullopt.
std::optional<std::string> detect_chat_template(std::string_view template_source);

// Renders `messages` with the template named `override_name` if given, else the one recognised in
// `template_source`; an empty or unrecognised source falls back to ChatML with a warning.
// `add_generation_prompt` appends the header of the assistant's next turn.
// Throws realizar::Error for an unknown override name, or where the original template raises
// (LLaMA-2: roles must alternate user/assistant after an optional system message).
ChatRender render_chat(std::string_view template_source, std::span<const ChatMessage> messages,
                       bool add_generation_prompt, const ChatSpecialTokens& special_tokens,
                       const std::optional<std::string>& override_name = std::nullopt);

}  // namespace realizar
