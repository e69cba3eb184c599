// The --chat options of `apr run` (and --chat-template, which `apr chat` shares), and the prompt they make (through
// realizar/prompt.h, the one place that renders prompts).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "realizar/tokenizer.h"

namespace realizar::cli {

struct ChatArgs {
  bool chat = false;
  std::string system;
  std::optional<std::string> template_name;  // --chat-template NAME overrides the model's
};

void add_chat_options(CLI::App& app, ChatArgs& args);
// --chat-template NAME (one of chat_template_names()).
void add_chat_template_option(CLI::App& app, std::optional<std::string>& template_name);

// Token ids for `text`: text_prompt() without --chat; with --chat, chat_prompt() of a user message
// (after the system message if given). Prints the template's warning to stderr, if any.
std::vector<int32_t> tokenize_prompt(const Tokenizer& tokenizer, const std::string& text,
                                     const ChatArgs& chat);

}  // namespace realizar::cli
