// Native renderers of the known chat templates. Each function mirrors the Jinja source of its
// family (committed in tests/data/tokenizer/chat_templates.json), including transformers'
// trim_blocks/lstrip_blocks whitespace handling.
#include <realizar/chat_template.h>
#include <realizar/error.h>

#include <functional>

namespace realizar {

namespace {

constexpr std::string_view kWhitespace = " \t\n\r\v\f";
constexpr std::string_view kQwenDefaultSystem = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";
constexpr std::string_view kSmolLM2DefaultSystem =
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face";
constexpr std::string_view kDeepSeekCoderDefaultSystem =
    "You are an AI programming assistant, utilizing the Deepseek Coder model, developed by Deepseek Company, and you "
    "only answer questions related to computer science. For politically sensitive questions, security and privacy "
    "issues, and other non-computer science questions, you will refuse to answer\n";

bool contains(std::string_view text, std::string_view part) { return text.find(part) != std::string_view::npos; }

// Python's str.strip/lstrip/rstrip with a character set (Jinja's trim is strip()).
std::string_view lstrip(std::string_view s, std::string_view chars = kWhitespace) {
  const size_t start = s.find_first_not_of(chars);
  return start == std::string_view::npos ? std::string_view() : s.substr(start);
}
std::string_view rstrip(std::string_view s, std::string_view chars = kWhitespace) {
  const size_t end = s.find_last_not_of(chars);
  return end == std::string_view::npos ? std::string_view() : s.substr(0, end + 1);
}
std::string_view strip(std::string_view s, std::string_view chars = kWhitespace) { return rstrip(lstrip(s, chars), chars); }

using Messages = std::span<const ChatMessage>;

std::string chatml_turn(std::string_view role, std::string_view content) {
  return "<|im_start|>" + std::string(role) + "\n" + std::string(content) + "<|im_end|>\n";
}

std::string render_chatml(Messages messages, bool add_generation_prompt, const ChatSpecialTokens&) {
  std::string out;
  for (const ChatMessage& m : messages) out += chatml_turn(m.role, m.content);
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

// SmolLM2: ChatML with a default system turn when the conversation does not start with one.
std::string render_smollm2(Messages messages, bool add_generation_prompt, const ChatSpecialTokens& special) {
  const bool has_system = !messages.empty() && messages[0].role == "system";
  const std::string default_system = has_system ? "" : chatml_turn("system", kSmolLM2DefaultSystem);
  return default_system + render_chatml(messages, add_generation_prompt, special);
}

// Qwen's "tool" messages: consecutive ones share one user turn of <tool_response> blocks.
void append_qwen_tool_response(std::string& out, Messages messages, size_t i) {
  if (i == 0 || messages[i - 1].role != "tool") out += "<|im_start|>user";
  out += "\n<tool_response>\n" + messages[i].content + "\n</tool_response>";
  if (i + 1 == messages.size() || messages[i + 1].role != "tool") out += "<|im_end|>\n";
}

std::string render_qwen25(Messages messages, bool add_generation_prompt, const ChatSpecialTokens&) {
  std::string out;
  const bool has_system = !messages.empty() && messages[0].role == "system";
  out += chatml_turn("system", has_system ? std::string_view(messages[0].content) : kQwenDefaultSystem);
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == "user" || m.role == "assistant" || (m.role == "system" && i > 0)) {
      out += chatml_turn(m.role, m.content);
    } else if (m.role == "tool") {
      append_qwen_tool_response(out, messages, i);
    }
  }
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

// The last user message that is not a tool response: assistant turns after it show their reasoning.
size_t qwen3_last_query_index(Messages messages) {
  for (size_t i = messages.size(); i-- > 0;) {
    const std::string& c = messages[i].content;
    const bool tool_response = c.starts_with("<tool_response>") && c.ends_with("</tool_response>");
    if (messages[i].role == "user" && !tool_response) return i;
  }
  return messages.size() - 1;
}

std::string qwen3_assistant_turn(Messages messages, size_t i, size_t last_query_index) {
  std::string_view content = messages[i].content;
  std::string_view reasoning;
  const size_t think_end = content.find("</think>");
  if (think_end != std::string_view::npos) {
    const std::string_view before = rstrip(content.substr(0, think_end), "\n");
    const size_t think_start = before.rfind("<think>");
    reasoning = lstrip(think_start == std::string_view::npos ? before : before.substr(think_start + 7), "\n");
    content = lstrip(content.substr(content.rfind("</think>") + 8), "\n");
  }
  std::string out = "<|im_start|>assistant\n";
  if (i > last_query_index && (i + 1 == messages.size() || !reasoning.empty())) {
    out += "<think>\n" + std::string(strip(reasoning, "\n")) + "\n</think>\n\n" + std::string(lstrip(content, "\n"));
  } else {
    out += content;
  }
  return out + "<|im_end|>\n";
}

std::string render_qwen3(Messages messages, bool add_generation_prompt, const ChatSpecialTokens&) {
  std::string out;
  if (messages.empty()) fail("the qwen3 chat template needs at least one message");
  if (messages[0].role == "system") out += chatml_turn("system", messages[0].content);
  const size_t last_query_index = qwen3_last_query_index(messages);
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == "user" || (m.role == "system" && i > 0)) {
      out += chatml_turn(m.role, m.content);
    } else if (m.role == "assistant") {
      out += qwen3_assistant_turn(messages, i, last_query_index);
    } else if (m.role == "tool") {
      append_qwen_tool_response(out, messages, i);
    }
  }
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

std::string render_llama2(Messages messages, bool, const ChatSpecialTokens& special) {
  const bool has_system = !messages.empty() && messages[0].role == "system";
  const Messages turns = has_system ? messages.subspan(1) : messages;
  std::string out;
  for (size_t i = 0; i < turns.size(); ++i) {
    if ((turns[i].role == "user") != (i % 2 == 0))
      fail("llama2 chat template: conversation roles must alternate user/assistant/user/assistant/...");
    std::string content = turns[i].content;
    if (i == 0 && has_system) content = "<<SYS>>\n" + messages[0].content + "\n<</SYS>>\n\n" + content;
    if (turns[i].role == "user") {
      out += special.bos + "[INST] " + std::string(strip(content)) + " [/INST]";
    } else if (turns[i].role == "assistant") {
      out += " " + std::string(strip(content)) + " " + special.eos;
    }
  }
  return out;
}

std::string render_llama3(Messages messages, bool add_generation_prompt, const ChatSpecialTokens& special) {
  std::string out;
  for (size_t i = 0; i < messages.size(); ++i) {
    if (i == 0) out += special.bos;
    out += "<|start_header_id|>" + messages[i].role + "<|end_header_id|>\n\n" + std::string(strip(messages[i].content)) +
           "<|eot_id|>";
  }
  if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

std::string render_zephyr(Messages messages, bool add_generation_prompt, const ChatSpecialTokens& special) {
  std::string out;
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string& role = messages[i].role;
    if (role == "user" || role == "system" || role == "assistant") {
      out += "<|" + role + "|>\n" + messages[i].content + special.eos + "\n";
    }
    if (i + 1 == messages.size() && add_generation_prompt) out += "<|assistant|>\n";
  }
  return out;
}

std::string render_deepseek_coder(Messages messages, bool add_generation_prompt, const ChatSpecialTokens& special) {
  bool has_system = false;
  for (const ChatMessage& m : messages) has_system = has_system || m.role == "system";
  std::string out = special.bos;
  if (!has_system) out += kDeepSeekCoderDefaultSystem;
  for (const ChatMessage& m : messages) {
    if (m.role == "system") {
      out += m.content;
    } else if (m.role == "user") {
      out += "### Instruction:\n" + m.content + "\n";
    } else {
      out += "### Response:\n" + m.content + "\n<|EOT|>\n";
    }
  }
  if (add_generation_prompt) out += "### Response:\n";
  return out;
}

using Renderer = std::function<std::string(Messages, bool, const ChatSpecialTokens&)>;

struct KnownTemplate {
  std::string name;
  Renderer render;
};

const std::vector<KnownTemplate>& known_templates() {
  static const std::vector<KnownTemplate> known = {
      {"chatml", render_chatml},   {"qwen2.5", render_qwen25}, {"qwen3", render_qwen3},
      {"llama2", render_llama2},   {"llama3", render_llama3},  {"zephyr", render_zephyr},
      {"deepseek-coder", render_deepseek_coder}, {"smollm2", render_smollm2},
  };
  return known;
}

}  // namespace

const std::vector<std::string>& chat_template_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const auto& known : known_templates()) n.push_back(known.name);
    return n;
  }();
  return names;
}

std::optional<std::string> detect_chat_template(std::string_view source) {
  if (contains(source, "<|im_start|>")) {
    if (contains(source, kQwenDefaultSystem)) return "qwen2.5";
    if (contains(source, kSmolLM2DefaultSystem)) return "smollm2";
    if (contains(source, "</think>") && contains(source, "last_query_index")) return "qwen3";
    return "chatml";
  }
  if (contains(source, "<|start_header_id|>") && contains(source, "<|eot_id|>")) return "llama3";
  if (contains(source, "[INST]") && contains(source, "<<SYS>>")) return "llama2";
  if (contains(source, "<|user|>") && contains(source, "<|assistant|>") && contains(source, "eos_token") &&
      !contains(source, "<|end|>"))
    return "zephyr";
  if (contains(source, "### Instruction:") && contains(source, "### Response:")) return "deepseek-coder";
  return std::nullopt;
}

ChatRender render_chat(std::string_view template_source, std::span<const ChatMessage> messages,
                       bool add_generation_prompt, const ChatSpecialTokens& special_tokens,
                       const std::optional<std::string>& override_name) {
  ChatRender result;
  if (override_name) {
    result.template_name = *override_name;
  } else if (auto detected = detect_chat_template(template_source)) {
    result.template_name = *detected;
  } else {
    result.template_name = "chatml";
    result.warning = template_source.empty() ? "the model has no chat template; using ChatML"
                                             : "chat template not recognised; using ChatML";
  }
  for (const auto& known : known_templates()) {
    if (known.name == result.template_name) {
      result.text = known.render(messages, add_generation_prompt, special_tokens);
      return result;
    }
  }
  std::string names;
  for (const auto& name : chat_template_names()) names += (names.empty() ? "" : ", ") + name;
  fail("unknown chat template name '{}' (known: {})", result.template_name, names);
}

}  // namespace realizar
