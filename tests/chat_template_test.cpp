// Chat templates against renders of the real Jinja templates by transformers' apply_chat_template
// (tests/data/tokenizer/chat_golden.json, made by tools/reference/make_tokenizer_golden.py).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <realizar/chat_template.h>
#include <realizar/error.h>

#include <nlohmann/json.hpp>

#include "test_support.h"

namespace realizar {
namespace {

using nlohmann::json;

json data(const std::string& name) {
  return json::parse(testing::read_file(testing::source_dir() / "tests/data/tokenizer" / name));
}

std::vector<ChatMessage> messages_of(const json& conversation) {
  std::vector<ChatMessage> messages;
  for (const json& m : conversation) messages.push_back({m["role"], m["content"]});
  return messages;
}

TEST(ChatTemplate, RendersLikeTransformers) {
  const json templates = data("chat_templates.json");
  const json golden = data("chat_golden.json");
  ASSERT_GT(golden["renders"].size(), 60u);
  for (const json& expected : golden["renders"]) {
    const std::string name = expected["template"];
    const json& tmpl = templates[name];
    const auto messages = messages_of(golden["conversations"][expected["conversation"].get<std::string>()]);
    const ChatSpecialTokens special{tmpl["bos_token"], tmpl["eos_token"]};
    const bool generation = expected["add_generation_prompt"];
    SCOPED_TRACE(name + " / " + expected["conversation"].get<std::string>() + (generation ? " + generation prompt" : ""));
    EXPECT_EQ(detect_chat_template(tmpl["template"].get<std::string>()), name);
    if (expected["render"].is_null()) {
      EXPECT_THROW(render_chat(tmpl["template"].get<std::string>(), messages, generation, special), Error);
      continue;
    }
    const ChatRender render = render_chat(tmpl["template"].get<std::string>(), messages, generation, special);
    EXPECT_EQ(render.template_name, name);
    EXPECT_EQ(render.warning, "");
    EXPECT_EQ(render.text, expected["render"].get<std::string>());
    // Overriding by name gives the same text, whatever the model's template.
    EXPECT_EQ(render_chat("", messages, generation, special, name).text, render.text);
  }
}

TEST(ChatTemplate, UnknownTemplateFallsBackToChatMLWithWarning) {
  const std::vector<ChatMessage> messages = {{"user", "Hi"}};
  const ChatRender render = render_chat("{{ messages[0].content }} custom", messages, true, {});
  EXPECT_EQ(render.template_name, "chatml");
  EXPECT_THAT(render.warning, ::testing::HasSubstr("not recognised"));
  EXPECT_EQ(render.text, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_THAT(render_chat("", messages, false, {}).warning, ::testing::HasSubstr("no chat template"));
}

TEST(ChatTemplate, UnknownOverrideNameIsAnError) {
  const std::vector<ChatMessage> messages = {{"user", "Hi"}};
  EXPECT_THAT([&] { render_chat("", messages, true, {}, "vicuna"); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("unknown chat template name 'vicuna' (known: chatml")));
}

TEST(ChatTemplate, Llama2RejectsNonAlternatingRoles) {
  const std::vector<ChatMessage> messages = {{"user", "a"}, {"user", "b"}};
  EXPECT_THAT([&] { render_chat("", messages, false, {"<s>", "</s>"}, "llama2"); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("roles must alternate")));
}

}  // namespace
}  // namespace realizar
