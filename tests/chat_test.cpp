// The conversation logic of `apr chat` (src/chat): turns and the system message, dropping the
// oldest turns to fit the context, saving and loading OpenAI-shaped messages, and a chat session
// on the serving engine (the rendered prompt of each turn, prefix caching across turns, stopping
// an answer, overflow notices). The terminal side is tests/python/test_chat.py.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <deque>

#include <nlohmann/json.hpp>

#include "chat/chat_session.h"
#include "chat/conversation.h"
#include "realizar/convert.h"
#include "realizar/engine.h"
#include "realizar/error.h"
#include "realizar/prompt.h"
#include "test_support.h"
#include "util/thread_pool.h"

namespace realizar {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using nlohmann::json;

std::vector<std::pair<std::string, std::string>> pairs_of(const std::vector<ChatMessage>& messages) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const ChatMessage& m : messages) out.emplace_back(m.role, m.content);
  return out;
}

using Pair = std::pair<std::string, std::string>;

// ---- turns ---------------------------------------------------------------------------------------

TEST(Conversation, TheSystemMessageComesFirstAndStaysThroughClear) {
  Conversation c("Be brief.");
  c.add("user", "Hi");
  c.add("assistant", "Hello.");
  EXPECT_THAT(pairs_of(c.messages()),
              ElementsAre(Pair{"system", "Be brief."}, Pair{"user", "Hi"}, Pair{"assistant", "Hello."}));
  c.clear();
  EXPECT_THAT(pairs_of(c.messages()), ElementsAre(Pair{"system", "Be brief."}));
  c.set_system("");
  EXPECT_TRUE(c.messages().empty());
}

TEST(Conversation, OnlyUserAndAssistantMessagesAreAdded) {
  Conversation c;
  EXPECT_THAT([&] { c.add("system", "x"); }, ::testing::ThrowsMessage<Error>(HasSubstr("got 'system'")));
  EXPECT_THAT([&] { c.add("tool", "x"); }, ::testing::ThrowsMessage<Error>(HasSubstr("got 'tool'")));
  EXPECT_TRUE(c.turns().empty());
}

TEST(Conversation, TheOldestTurnIsAUserMessageAndEverythingUpToTheNextOne) {
  Conversation c("S");
  c.add("assistant", "a greeting before any question");  // as a loaded file may start
  c.add("user", "u1");
  c.add("assistant", "a1");
  c.add("assistant", "a1, continued");
  c.add("user", "u2");
  EXPECT_EQ(c.turn_count(), 3);
  EXPECT_EQ(c.drop_oldest_turn(), 1);
  EXPECT_EQ(c.drop_oldest_turn(), 3);
  EXPECT_THAT(pairs_of(c.messages()), ElementsAre(Pair{"system", "S"}, Pair{"user", "u2"}));
  EXPECT_EQ(c.drop_oldest_turn(), 1);
  EXPECT_EQ(c.drop_oldest_turn(), 0);
  EXPECT_EQ(c.system(), "S");
}

// ---- saving and loading --------------------------------------------------------------------------

TEST(ConversationFile, SaveThenLoadGivesTheSameMessages) {
  testing::TempDir dir;
  Conversation c("You answer in \"quotes\".\nAlways.");
  c.add("user", "Ünïcödé, emoji 🦀, a tab\tand a backslash \\");
  c.add("assistant", "<|im_start|> stays text\r\n");
  c.add("user", "");
  save_conversation(c, dir / "chat.json");
  const Conversation loaded = load_conversation(dir / "chat.json");
  EXPECT_EQ(pairs_of(loaded.messages()), pairs_of(c.messages()));
  EXPECT_FALSE(std::filesystem::exists(dir / "chat.json.partial"));

  // The file is OpenAI's `messages` array, each message's role before its content.
  const std::string text = testing::read_file(dir / "chat.json");
  const json saved = json::parse(text);
  ASSERT_TRUE(saved.is_array());
  ASSERT_EQ(saved.size(), 4u);
  EXPECT_EQ(saved[0], (json{{"role", "system"}, {"content", c.system()}}));
  EXPECT_EQ(saved[2], (json{{"role", "assistant"}, {"content", "<|im_start|> stays text\r\n"}}));
  EXPECT_LT(text.find("\"role\""), text.find("\"content\""));
}

TEST(ConversationFile, SavingReplacesAnExistingFile) {
  testing::TempDir dir;
  testing::write_file(dir / "chat.json", std::string(10000, 'x'));
  Conversation c;
  c.add("user", "only this");
  save_conversation(c, dir / "chat.json");
  EXPECT_EQ(json::parse(testing::read_file(dir / "chat.json")), json::parse(R"([{"role":"user","content":"only this"}])"));
}

TEST(ConversationFile, LoadTakesAWholeChatRequest) {
  const Conversation c = conversation_from_json(
      R"({"model": "m", "temperature": 0, "messages": [{"role": "system", "content": "S"},
          {"role": "user", "content": "U", "name": "ignored"}]})",
      "request.json");
  EXPECT_THAT(pairs_of(c.messages()), ElementsAre(Pair{"system", "S"}, Pair{"user", "U"}));
}

TEST(ConversationFile, BadFilesAreRefusedByNameAndIndex) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"([{"role": "user", "content": "a"}, {"role": "tool", "content": "b"}])",
       "chat.json: messages[1]: unknown role 'tool' (expected system, user or assistant)"},
      {R"([{"role": "user", "content": [{"type": "text", "text": "a"}]}])",
       "chat.json: messages[0]: \"content\" must be a string"},
      {R"([{"role": "user"}])", "chat.json: messages[0]: \"content\" must be a string"},
      {R"([{"content": "a"}])", "chat.json: messages[0]: \"role\" must be a string"},
      {R"([["user", "a"]])", "chat.json: messages[0]: expected an object"},
      {R"([{"role": "user", "content": "a"}, {"role": "system", "content": "b"}])",
       "chat.json: messages[1]: a system message may only come first"},
      {R"({"messages": "none"})", "chat.json: expected a JSON array of messages"},
      {R"("just a string")", "chat.json: expected a JSON array of messages"},
      {R"([{"role": "user", "content": "a"})", "chat.json: not valid JSON: parse error"},
      {"", "chat.json: not valid JSON"},
  };
  for (const auto& [text, message] : cases) {
    SCOPED_TRACE(text);
    EXPECT_THAT([&] { conversation_from_json(text, "chat.json"); }, ::testing::ThrowsMessage<Error>(HasSubstr(message)));
  }
}

TEST(ConversationFile, MissingOrUnwritablePathsAreNamed) {
  testing::TempDir dir;
  EXPECT_THAT([&] { load_conversation(dir / "absent.json"); },
              ::testing::ThrowsMessage<Error>(HasSubstr("cannot read " + (dir / "absent.json").string())));
  EXPECT_THAT([&] { save_conversation(Conversation("S"), dir / "no-such-dir" / "chat.json"); },
              ::testing::ThrowsMessage<Error>(HasSubstr("cannot write " + (dir / "no-such-dir" / "chat.json").string())));
}

TEST(ConversationFile, TextThatIsNotUtf8IsRefusedRatherThanAltered) {
  testing::TempDir dir;
  Conversation c;
  c.add("user", "fine");
  c.add("assistant", "bad byte \xff here");
  EXPECT_THAT([&] { save_conversation(c, dir / "chat.json"); },
              ::testing::ThrowsMessage<Error>(HasSubstr("messages[1] (assistant) is not valid UTF-8")));
  EXPECT_FALSE(std::filesystem::exists(dir / "chat.json"));
}

// ---- fitting the context (a real tokenizer, ChatML) ----------------------------------------------

const Tokenizer& qwen2_tokenizer() {
  static const Tokenizer tokenizer(
      load_hf_tokenizer(testing::source_dir() / "tests/data/tokenizers/qwen2/tokenizer.json", std::nullopt));
  return tokenizer;
}

ChatPrompt chatml(std::span<const ChatMessage> messages) {
  return chat_prompt(qwen2_tokenizer(), messages, std::string("chatml"));
}

int64_t tokens_of(const std::vector<ChatMessage>& messages) {
  return static_cast<int64_t>(chatml(messages).tokens.size());
}

// A ChatML turn's tokens on their own: each turn starts with a control token, so tokens do not merge
// across turns and a conversation's count is the sum of its turns'.
int64_t turn_tokens(const std::string& user, const std::string& answer) {
  const std::string text = "<|im_start|>user\n" + user + "<|im_end|>\n<|im_start|>assistant\n" + answer + "<|im_end|>\n";
  return static_cast<int64_t>(qwen2_tokenizer().encode(text, false, true).size());
}

Conversation three_turns() {
  Conversation c("You are terse.");
  c.add("user", "What is the tallest mountain on Earth?");
  c.add("assistant", "Mount Everest, 8,849 metres.");
  c.add("user", "And the deepest trench?");
  c.add("assistant", "The Mariana Trench.");
  c.add("user", "How deep is it?");
  return c;
}

TEST(FitToContext, AConversationThatFitsIsLeftWhole) {
  Conversation c = three_turns();
  const ContextFit fit = fit_to_context(c, chatml, tokens_of(c.messages()));
  EXPECT_TRUE(fit.fits);
  EXPECT_TRUE(fit.dropped_tokens.empty());
  EXPECT_EQ(fit.prompt.text, chatml(three_turns().messages()).text);
  EXPECT_EQ(c.turns().size(), 5u);
}

TEST(FitToContext, DropsTheOldestTurnsAndCountsTheirTokens) {
  const Conversation whole = three_turns();
  const int64_t first = turn_tokens("What is the tallest mountain on Earth?", "Mount Everest, 8,849 metres.");
  const int64_t second = turn_tokens("And the deepest trench?", "The Mariana Trench.");
  const int64_t all = tokens_of(whole.messages());

  Conversation one = whole;
  ContextFit fit = fit_to_context(one, chatml, all - 1);
  EXPECT_TRUE(fit.fits);
  EXPECT_THAT(fit.dropped_tokens, ElementsAre(first));
  EXPECT_EQ(static_cast<int64_t>(fit.prompt.tokens.size()), all - first);
  EXPECT_THAT(pairs_of(one.messages()),
              ElementsAre(Pair{"system", "You are terse."}, Pair{"user", "And the deepest trench?"},
                          Pair{"assistant", "The Mariana Trench."}, Pair{"user", "How deep is it?"}));
  EXPECT_EQ(fit.prompt.text, chatml(one.messages()).text);

  Conversation two = whole;
  fit = fit_to_context(two, chatml, all - first - 1);
  EXPECT_TRUE(fit.fits);
  EXPECT_THAT(fit.dropped_tokens, ElementsAre(first, second));
  EXPECT_THAT(pairs_of(two.messages()), ElementsAre(Pair{"system", "You are terse."}, Pair{"user", "How deep is it?"}));
}

TEST(FitToContext, RefusesWhenTheSystemMessageAndTheNewestTurnAloneAreTooLong) {
  Conversation c = three_turns();
  const int64_t minimal = tokens_of({{"system", "You are terse."}, {"user", "How deep is it?"}});
  const ContextFit fit = fit_to_context(c, chatml, minimal - 1);
  EXPECT_FALSE(fit.fits);
  EXPECT_EQ(static_cast<int64_t>(fit.prompt.tokens.size()), minimal);
  EXPECT_EQ(pairs_of(c.messages()), pairs_of(three_turns().messages()));  // nothing dropped

  EXPECT_TRUE(fit_to_context(c, chatml, minimal).fits);
  EXPECT_EQ(c.turns().size(), 1u);
}

// ---- a chat session on the engine (the tiny synth model: byte-level vocabulary, one token a byte) --

const std::filesystem::path& tiny_model() {
  static testing::TempDir dir;
  static const std::filesystem::path path = [] {
    const std::filesystem::path p = dir / "tiny.gguf";
    ThreadPool pool(2);
    SynthOptions options;
    options.scheme = QuantScheme::F32;
    options.seed = 5;
    synth_model(synth_preset("tiny"), p, options, pool);
    return p;
  }();
  return path;
}

EngineOptions engine_options(int64_t context, int64_t max_batch_tokens = 512) {
  EngineOptions o;
  o.device = Device::Reference;
  o.context_length = context;
  o.max_batch_tokens = max_batch_tokens;
  return o;
}

ChatSettings greedy_chatml(int max_tokens, bool ignore_eos = false) {
  ChatSettings s;
  s.generation.max_tokens = max_tokens;
  s.generation.sampling.temperature = 0;
  s.generation.ignore_eos = ignore_eos;
  s.template_name = "chatml";
  return s;
}

// What a turn handed to the callbacks.
struct Seen {
  std::vector<std::string> prompts;
  std::vector<std::string> notices;
  std::string text;
};

TurnCallbacks recording(Seen& seen) {
  TurnCallbacks c;
  c.on_prompt = [&seen](const ChatPrompt& p) { seen.prompts.push_back(p.text); };
  c.on_notice = [&seen](const std::string& n) { seen.notices.push_back(n); };
  c.on_text = [&seen](std::string_view t) { seen.text += t; };
  return c;
}

std::string chatml_turn(const std::string& role, const std::string& content) {
  return "<|im_start|>" + role + "\n" + content + "<|im_end|>\n";
}

TEST(ChatSession, EachTurnRendersTheWholeConversationAndStreamsTheAnswer) {
  Engine engine(tiny_model(), engine_options(256));
  ChatSession chat(engine, greedy_chatml(12), "Be brief.");
  Seen first, second;
  const TurnResult one = chat.send("Hi there", recording(first));
  const TurnResult two = chat.send("Go on", recording(second));

  const std::string header = "<|im_start|>assistant\n";
  EXPECT_THAT(first.prompts, ElementsAre(chatml_turn("system", "Be brief.") + chatml_turn("user", "Hi there") + header));
  EXPECT_THAT(second.prompts,
              ElementsAre(chatml_turn("system", "Be brief.") + chatml_turn("user", "Hi there") +
                          chatml_turn("assistant", one.answer) + chatml_turn("user", "Go on") + header));
  EXPECT_EQ(first.text, one.answer);
  EXPECT_EQ(second.text, two.answer);
  EXPECT_TRUE(first.notices.empty());
  EXPECT_THAT(pairs_of(chat.conversation().messages()),
              ElementsAre(Pair{"system", "Be brief."}, Pair{"user", "Hi there"}, Pair{"assistant", one.answer},
                          Pair{"user", "Go on"}, Pair{"assistant", two.answer}));
  ASSERT_TRUE(chat.last_turn());
  EXPECT_EQ(chat.last_turn()->answer, two.answer);
  EXPECT_EQ(chat.context_used(), static_cast<int64_t>(chat.render(chat.conversation().messages(), false).tokens.size()));
}

TEST(ChatSession, TheAnswerIsTheEnginesForTheRenderedPrompt) {
  Engine engine(tiny_model(), engine_options(256));
  ChatSession chat(engine, greedy_chatml(16, /*ignore_eos=*/true), "S");
  Seen seen;
  const TurnResult turn = chat.send("Hello", recording(seen));
  const std::vector<ChatMessage> messages = {{"system", "S"}, {"user", "Hello"}};
  std::string expected;
  const GenerationStats alone = engine.generate(chat_prompt(engine.tokenizer(), messages, std::string("chatml")).tokens,
                                                greedy_chatml(16, true).generation,
                                                [&](std::string_view t) { expected += t; });
  EXPECT_EQ(turn.answer, expected);
  EXPECT_EQ(turn.finish, FinishReason::Length);
  EXPECT_EQ(turn.stats.generated_tokens, 16);
  EXPECT_EQ(turn.stats.prompt_tokens, alone.prompt_tokens);
}

TEST(ChatSession, TheNextTurnPrefillsOnlyWhatIsNew) {
  Engine engine(tiny_model(), engine_options(256));
  ChatSession chat(engine, greedy_chatml(8, true));
  Seen seen;
  const TurnResult one = chat.send("The first question, long enough for some blocks.", recording(seen));
  const TurnResult two = chat.send("Another one.", recording(seen));
  EXPECT_EQ(one.stats.cached_tokens, 0);
  // At least every whole 16-token block of the first prompt comes from the prefix cache.
  EXPECT_GE(two.stats.cached_tokens, one.stats.prompt_tokens / 16 * 16);
  EXPECT_GT(two.stats.cached_tokens, 0);
  EXPECT_LT(two.stats.cached_tokens, two.stats.prompt_tokens);
}

TEST(ChatSession, AStoppedAnswerStaysAsFarAsItCame) {
  Engine engine(tiny_model(), engine_options(256));
  ChatSession chat(engine, greedy_chatml(150, /*ignore_eos=*/true));
  Seen seen;
  TurnCallbacks callbacks = recording(seen);
  callbacks.stop_requested = [&seen] { return !seen.text.empty(); };
  const TurnResult turn = chat.send("Tell me a long story", callbacks);
  EXPECT_EQ(turn.finish, FinishReason::Cancelled);
  EXPECT_FALSE(turn.answer.empty());
  EXPECT_EQ(turn.answer, seen.text);
  EXPECT_LT(turn.stats.generated_tokens, 150);
  EXPECT_THAT(pairs_of(chat.conversation().messages()),
              ElementsAre(Pair{"user", "Tell me a long story"}, Pair{"assistant", turn.answer}));
}

TEST(ChatSession, AnAnswerStoppedBeforeItBeganTakesItsMessageAway) {
  // One prompt token per step: the cancel arrives long before the prefill is done.
  Engine engine(tiny_model(), engine_options(256, /*max_batch_tokens=*/1));
  ChatSession chat(engine, greedy_chatml(8));
  Seen seen;
  TurnCallbacks callbacks = recording(seen);
  callbacks.stop_requested = [] { return true; };
  const TurnResult turn = chat.send(std::string(150, 'x'), callbacks);
  EXPECT_EQ(turn.finish, FinishReason::Cancelled);
  EXPECT_EQ(turn.answer, "");
  EXPECT_TRUE(chat.conversation().messages().empty());
  EXPECT_EQ(chat.last_turn()->finish, FinishReason::Cancelled);
}

TEST(ChatSession, ATurnThatDidNotHappenGivesBackTheTurnsDroppedForIt) {
  Engine engine(tiny_model(), engine_options(256, /*max_batch_tokens=*/1));
  ChatSession chat(engine, greedy_chatml(16), "Sys");
  for (int i = 0; i < 3; ++i) {
    chat.conversation().add("user", std::string(40, 'q'));
    chat.conversation().add("assistant", std::string(20, 'a'));
  }
  const auto before = pairs_of(chat.conversation().messages());
  Seen seen;
  TurnCallbacks callbacks = recording(seen);
  callbacks.stop_requested = [] { return true; };
  const TurnResult turn = chat.send(std::string(60, 'n'), callbacks);
  EXPECT_EQ(turn.finish, FinishReason::Cancelled);
  EXPECT_EQ(turn.answer, "");
  EXPECT_FALSE(seen.notices.empty()) << "older turns had to go for the message";
  EXPECT_EQ(pairs_of(chat.conversation().messages()), before);
}

TEST(ChatSession, AFullContextDropsTheOldestTurnWithANotice) {
  const int64_t context = 256;
  const int max_tokens = 24;
  Engine engine(tiny_model(), engine_options(context));
  ChatSession chat(engine, greedy_chatml(max_tokens), "Sys");
  const std::vector<std::string> questions = {"first question, forty bytes long........",
                                              "second question, forty bytes long.......",
                                              "third question, forty bytes long........",
                                              "fourth question, forty bytes long......."};
  std::vector<TurnResult> turns;
  std::vector<Seen> seen(questions.size());
  for (size_t i = 0; i < questions.size(); ++i) turns.push_back(chat.send(questions[i], recording(seen[i])));

  // The expected drops, replayed with one token per byte of the ChatML text (+ BOS if added): the
  // oldest turns go, each with its notice, exactly while the prompt and the answer's room pass
  // the context.
  const int64_t bos = turns[0].stats.prompt_tokens - static_cast<int64_t>(seen[0].prompts.at(0).size());
  const int64_t fixed = bos + static_cast<int64_t>(chatml_turn("system", "Sys").size() +
                                                   std::string("<|im_start|>assistant\n").size());
  std::deque<int64_t> kept;  // bytes of the turns the model still sees
  int drops = 0;
  for (size_t i = 0; i < questions.size(); ++i) {
    SCOPED_TRACE("turn " + std::to_string(i));
    int64_t prompt = fixed + static_cast<int64_t>(chatml_turn("user", questions[i]).size());
    for (const int64_t t : kept) prompt += t;
    std::vector<std::string> expected;
    while (prompt + max_tokens > context) {
      expected.push_back(fmt::format("context full: dropped the oldest turn ({} tokens)", kept.front()));
      prompt -= kept.front();
      kept.pop_front();
      ++drops;
    }
    EXPECT_EQ(seen[i].notices, expected);
    EXPECT_EQ(turns[i].stats.prompt_tokens, prompt);
    const std::string turn = chatml_turn("user", questions[i]) + chatml_turn("assistant", turns[i].answer);
    kept.push_back(static_cast<int64_t>(turn.size()));
  }
  EXPECT_GE(drops, 2) << "the turns must overflow the context";
  EXPECT_EQ(chat.conversation().system(), "Sys");
  EXPECT_EQ(chat.conversation().turn_count(), static_cast<int64_t>(kept.size()));
  EXPECT_EQ(chat.conversation().turns().back().content, turns.back().answer);
}

TEST(ChatSession, AMessageTooLongEvenAloneIsRefusedAndNotKept) {
  Engine engine(tiny_model(), engine_options(128));
  ChatSession chat(engine, greedy_chatml(16), "Sys");
  Seen seen;
  const TurnResult ok = chat.send("short", recording(seen));
  const auto before = pairs_of(chat.conversation().messages());
  EXPECT_THAT([&] { chat.send(std::string(120, 'y'), recording(seen)); },
              ::testing::ThrowsMessage<Error>(::testing::AllOf(HasSubstr("does not fit"),
                                                               HasSubstr("context of 128 tokens"),
                                                               HasSubstr("raise --ctx or lower --max-tokens"))));
  EXPECT_EQ(pairs_of(chat.conversation().messages()), before);
  EXPECT_EQ(chat.last_turn()->answer, ok.answer);
}

TEST(ChatSession, AnswersThatFillTheContextAreRefusedAtTheStart) {
  Engine engine(tiny_model(), engine_options(64));
  EXPECT_THAT([&] { ChatSession(engine, greedy_chatml(64)); },
              ::testing::ThrowsMessage<Error>(HasSubstr("answers of up to 64 tokens leave no room")));
}

TEST(ChatSession, AnUnrecognisedTemplateIsWarnedAboutOnce) {
  Engine engine(tiny_model(), engine_options(256));
  ChatSettings settings = greedy_chatml(4);
  settings.template_name.reset();  // the tiny model has none: ChatML with a warning
  ChatSession chat(engine, settings);
  Seen first, second;
  chat.send("a", recording(first));
  chat.send("b", recording(second));
  ASSERT_EQ(first.notices.size(), 1u);
  EXPECT_THAT(first.notices[0], HasSubstr("warning: "));
  EXPECT_THAT(first.notices[0], HasSubstr("chat template"));
  EXPECT_TRUE(second.notices.empty());
}

}  // namespace
}  // namespace realizar
