// Turning what the user typed into prompt tokens, shared by `apr run` and `apr tokenize`:
// raw text (control-token text stays plain text) or, with --chat, the model's chat template.
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

// Token ids for `text`. Without --chat: BOS as the model asks, special-token text not parsed
// (a user cannot inject control tokens). With --chat: the chat template rendered around a user
// message (and the system message if given), control tokens parsed, BOS added only when the
// template did not already write it. Prints the template's warning to stderr, if any.
std::vector<int32_t> tokenize_prompt(const Tokenizer& tokenizer, const std::string& text,
                                     const ChatArgs& chat);

}  // namespace realizar::cli
