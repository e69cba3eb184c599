#include "realizar/prompt.h"

#include "realizar/error.h"

namespace realizar {
namespace {

std::string_view strip_spaces(std::string_view s) {
  const size_t first = s.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return {};
  return s.substr(first, s.find_last_not_of(" \t\r\n") - first + 1);
}

std::string marker(size_t i) { return "\x01" + std::to_string(i) + "\x02"; }

bool holds_control_text(const Tokenizer& tokenizer, std::string_view content) {
  return tokenizer.encode(content, false, true) != tokenizer.encode(content, false, false);
}

// Where each message's content sits in `text`, the rendered prompt, so that control-token text a
// user wrote stays text. The template is rendered once more with each content replaced by a
// marker: what lies between the markers is the template's own text, which must match `text`
// around each content (written as it is, or stripped of surrounding whitespace). When that does
// not hold (a template that changes contents in other ways), a message holding control-token
// text is refused rather than let through as control tokens.
std::vector<Tokenizer::TextRange> content_ranges(const Tokenizer& tokenizer, std::string_view text,
                                                 std::string_view template_source,
                                                 std::span<const ChatMessage> messages,
                                                 bool add_generation_prompt, const ChatSpecialTokens& special,
                                                 const std::optional<std::string>& template_name) {
  std::vector<ChatMessage> marked(messages.begin(), messages.end());
  for (size_t i = 0; i < marked.size(); ++i) marked[i].content = marker(i);
  const std::string skeleton =
      render_chat(template_source, marked, add_generation_prompt, special, template_name).text;
  std::vector<Tokenizer::TextRange> ranges;
  size_t pos = 0, from = 0;  // in text, in skeleton
  bool aligned = true;
  for (size_t i = 0; i < messages.size() && aligned; ++i) {
    const size_t at = skeleton.find(marker(i), from);
    if (at == std::string::npos) {
      aligned = false;
      break;
    }
    const std::string_view before = std::string_view(skeleton).substr(from, at - from);
    from = at + marker(i).size();
    const size_t next = std::min(skeleton.find('\x01', from), skeleton.size());
    const std::string_view after = std::string_view(skeleton).substr(from, next - from);
    aligned = text.substr(pos).starts_with(before);
    pos += before.size();
    const std::string_view content = messages[i].content;
    bool matched = false;
    for (const std::string_view form : {content, strip_spaces(content)}) {
      if (aligned && text.substr(pos).starts_with(form) && text.substr(pos + form.size()).starts_with(after)) {
        if (!form.empty()) ranges.push_back({pos, pos + form.size()});
        pos += form.size();
        matched = true;
        break;
      }
    }
    aligned = aligned && matched;
  }
  if (aligned && text.substr(pos) == std::string_view(skeleton).substr(from)) return ranges;
  for (size_t i = 0; i < messages.size(); ++i) {
    if (holds_control_text(tokenizer, messages[i].content)) {
      fail("message {} ({}) holds control-token text, which this chat template does not keep apart", i,
           messages[i].role);
    }
  }
  return {};
}

}  // namespace

std::vector<int32_t> text_prompt(const Tokenizer& tokenizer, std::string_view text) {
  return tokenizer.encode(text, /*add_special=*/true, /*parse_special=*/false);
}

ChatPrompt chat_prompt(const Tokenizer& tokenizer, std::span<const ChatMessage> messages,
                       const std::optional<std::string>& template_name, bool add_generation_prompt) {
  ChatSpecialTokens special;
  if (auto bos = tokenizer.bos()) special.bos = tokenizer.token_text(*bos);
  if (auto eos = tokenizer.eos()) special.eos = tokenizer.token_text(*eos);
  const std::string source = tokenizer.spec().chat_template.value_or("");
  ChatRender render = render_chat(source, messages,
                                  add_generation_prompt, special, template_name);
  // Templates such as LLaMA-2's write "<s>" themselves; adding BOS again would double it.
  const bool template_wrote_bos = !special.bos.empty() && render.text.starts_with(special.bos);
  ChatPrompt prompt;
  prompt.tokens = tokenizer.encode_with_plain_ranges(
      render.text, /*add_special=*/!template_wrote_bos,
      content_ranges(tokenizer, render.text, source, messages, add_generation_prompt, special, template_name));
  prompt.text = std::move(render.text);
  prompt.template_name = std::move(render.template_name);
  prompt.warning = std::move(render.warning);
  return prompt;
}

}  // namespace realizar
