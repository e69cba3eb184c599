// Turning what a user gives into prompt tokens, one place for every front end (`apr run`,
// `apr chat`, the server): plain text, where control-token text stays plain text, or chat
// messages rendered with the model's chat template (chat_template.h).
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "realizar/chat_template.h"
#include "realizar/tokenizer.h"

namespace realizar {

// Plain text: BOS as the model asks, special-token text not parsed (a user cannot inject
// control tokens).
std::vector<int32_t> text_prompt(const Tokenizer& tokenizer, std::string_view text);

struct ChatPrompt {
  std::vector<int32_t> tokens;
  std::string text;           // the rendered template
  std::string template_name;  // the template used
  std::string warning;        // non-empty when the model's template was not recognised
};

// `messages` rendered with the model's chat template (or `template_name` when given), the
// assistant's turn header appended when `add_generation_prompt`; control tokens parsed, BOS added
// only when the template did not write it. Throws realizar::Error as render_chat does.
ChatPrompt chat_prompt(const Tokenizer& tokenizer, std::span<const ChatMessage> messages,
                       const std::optional<std::string>& template_name = std::nullopt,
                       bool add_generation_prompt = true);

}  // namespace realizar
