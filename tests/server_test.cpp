// The HTTP server's pieces that need no socket: request bodies parsed into engine requests
// (types, ranges, unsupported fields refused), responses shaped as OpenAI's and Ollama's (the SSE
// and NDJSON framing, usage, timings), Prometheus text, error mapping, and the connection probe on
// a real loopback connection. tests/python/test_serve*.py drive the whole server over HTTP.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sstream>

#include "realizar/prompt.h"
#include "server/api_error.h"
#include "server/connection.h"
#include "server/json_fields.h"
#include "server/ollama_api.h"
#include "server/openai_api.h"
#include "server/prometheus.h"
#include "test_support.h"

namespace realizar::server {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

const Tokenizer& qwen2_tokenizer() {
  static const Tokenizer tokenizer = [] {
    const auto dir = testing::source_dir() / "tests/data/tokenizers/qwen2";
    return Tokenizer(load_hf_tokenizer(dir / "tokenizer.json", dir / "tokenizer_config.json"));
  }();
  return tokenizer;
}

ModelContext context(int64_t length = 256) { return ModelContext{qwen2_tokenizer(), length, "m", std::nullopt}; }

// The 400 a body gets, or a test failure when it is accepted.
ApiError refusal(Generation (*prepare)(const json&, const ModelContext&), const std::string& body) {
  try {
    prepare(json::parse(body), context());
  } catch (const ApiError& e) {
    return e;
  }
  ADD_FAILURE() << "accepted " << body;
  return ApiError(0, "", "");
}

TEST(ServerJson, MalformedDeepAndNonObjectBodiesAreRefused) {
  EXPECT_THAT([] { parse_json_object("{\"a\": "); }, ::testing::ThrowsMessage<ApiError>(HasSubstr("not valid JSON")));
  EXPECT_THAT([] { parse_json_object("[1]"); }, ::testing::ThrowsMessage<ApiError>(HasSubstr("got an array")));
  EXPECT_THAT([] { parse_json_object(std::string(100000, '[')); },
              ::testing::ThrowsMessage<ApiError>(HasSubstr("deeper than 64")));
  EXPECT_THAT([] { parse_json_object("{\"a\": \"\xff\"}"); }, ::testing::ThrowsMessage<ApiError>(HasSubstr("not valid JSON")));
  EXPECT_EQ(parse_json_object("{\"a\": [[1]]}")["a"][0][0], 1);
}

TEST(ServerJson, FieldsCheckTypesAndRangesByName) {
  const json body = json::parse(R"({"i": 5.0, "f": 2.5, "s": "x", "b": true, "n": null, "o": {"k": "v"}, "l": ["a", 1]})");
  const Fields f(body);
  EXPECT_EQ(f.integer("i", 0, 10), 5);
  EXPECT_EQ(f.integer("n", 0, 10), std::nullopt);
  EXPECT_EQ(f.integer("absent", 0, 10), std::nullopt);
  EXPECT_THAT([&] { f.integer("f", 0, 10); }, ::testing::ThrowsMessage<ApiError>(HasSubstr("'f' must be an integer, got 2.5")));
  EXPECT_THAT([&] { f.integer("i", 6, 10); }, ::testing::ThrowsMessage<ApiError>(HasSubstr("between 6 and 10, got 5")));
  EXPECT_THAT([&] { f.number("s", 0, 1); }, ::testing::ThrowsMessage<ApiError>(HasSubstr("'s' must be a number, got a string")));
  EXPECT_THAT([&] { f.string("b"); }, ::testing::ThrowsMessage<ApiError>(HasSubstr("got a boolean")));
  EXPECT_THAT([&] { f.object("o")->integer("k", 0, 1); }, ::testing::ThrowsMessage<ApiError>(HasSubstr("'o.k'")));
  EXPECT_THAT([&] { f.string_or_strings("l", 4); }, ::testing::ThrowsMessage<ApiError>(HasSubstr("array of strings")));
  try {
    f.integer("f", 0, 10);
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(e.param, "f");
  }
}

TEST(OpenAiRequest, ChatMapsEveryParameter) {
  const Generation g = prepare_chat_completion(json::parse(R"({
      "model": "anything", "messages": [{"role": "system", "content": "Be brief."},
                                        {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]}],
      "temperature": 0.5, "top_p": 0.9, "top_k": 7, "min_p": 0.1, "presence_penalty": 0.5, "frequency_penalty": -0.5,
      "repetition_penalty": 1.2, "seed": 42, "stop": "END", "max_completion_tokens": 9, "max_tokens": 100,
      "logprobs": true, "top_logprobs": 3, "user": "u", "stream": true, "unknown_field": {"ignored": true}})"),
                                                 context());
  const std::vector<ChatMessage> messages{{"system", "Be brief."}, {"user", "Hi there"}};
  EXPECT_EQ(g.request.prompt, chat_prompt(qwen2_tokenizer(), messages).tokens);
  const GenerationOptions& o = g.request.options;
  EXPECT_FLOAT_EQ(o.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(o.sampling.top_p, 0.9f);
  EXPECT_EQ(o.sampling.top_k, 7);
  EXPECT_FLOAT_EQ(o.sampling.min_p, 0.1f);
  EXPECT_FLOAT_EQ(o.sampling.presence_penalty, 0.5f);
  EXPECT_FLOAT_EQ(o.sampling.frequency_penalty, -0.5f);
  EXPECT_FLOAT_EQ(o.sampling.repeat_penalty, 1.2f);
  EXPECT_EQ(o.sampling.seed, 42u);
  EXPECT_EQ(o.stop, std::vector<std::string>{"END"});
  EXPECT_EQ(o.max_tokens, 9);  // max_completion_tokens wins over max_tokens
  EXPECT_EQ(o.top_logprobs, 3);
  EXPECT_TRUE(g.stream);
  EXPECT_EQ(g.prompt_field, "messages");
}

TEST(OpenAiRequest, DefaultsAreLlamaServersWithARandomSeed) {
  const json body = json::parse(R"({"messages": [{"role": "user", "content": "x"}]})");
  const Generation a = prepare_chat_completion(body, context(300));
  const Generation b = prepare_chat_completion(body, context(300));
  const SamplingParams defaults;
  EXPECT_FLOAT_EQ(a.request.options.sampling.temperature, 0.8f);
  EXPECT_EQ(a.request.options.sampling.top_k, 40);
  EXPECT_FLOAT_EQ(a.request.options.sampling.top_p, 0.95f);
  EXPECT_FLOAT_EQ(a.request.options.sampling.min_p, 0.05f);
  EXPECT_FLOAT_EQ(a.request.options.sampling.repeat_penalty, defaults.repeat_penalty);
  EXPECT_NE(a.request.options.sampling.seed, b.request.options.sampling.seed);
  EXPECT_EQ(a.request.options.max_tokens, 300);  // chat: up to the context
  EXPECT_EQ(a.request.options.top_logprobs, -1);
  EXPECT_FALSE(a.stream);
  const Generation c = prepare_completion(json::parse(R"({"prompt": "x"})"), context(300));
  EXPECT_EQ(c.request.options.max_tokens, 16);  // completions: OpenAI's 16
}

TEST(OpenAiRequest, CompletionPromptForms) {
  const std::vector<int32_t> hello = text_prompt(qwen2_tokenizer(), "Hello world");
  for (const char* body : {R"({"prompt": "Hello world"})", R"({"prompt": ["Hello world"]})"}) {
    EXPECT_EQ(prepare_completion(json::parse(body), context()).request.prompt, hello) << body;
  }
  for (const char* body : {R"({"prompt": [5, 6, 7]})", R"({"prompt": [[5, 6, 7]]})"}) {
    EXPECT_EQ(prepare_completion(json::parse(body), context()).request.prompt, (std::vector<int32_t>{5, 6, 7})) << body;
  }
  const Generation g = prepare_completion(json::parse(R"({"prompt": "x", "logprobs": 2, "stop": ["a", "b"]})"), context());
  EXPECT_EQ(g.request.options.top_logprobs, 2);
  EXPECT_EQ(g.request.options.stop, (std::vector<std::string>{"a", "b"}));
}

TEST(OpenAiRequest, BadAndUnsupportedFieldsAreRefusedByName) {
  struct Case {
    Generation (*prepare)(const json&, const ModelContext&);
    const char* body;
    const char* param;
    const char* message;
  };
  const Case cases[] = {
      {prepare_chat_completion, R"({})", "messages", "'messages' is missing"},
      {prepare_chat_completion, R"({"messages": []})", "messages", "at least one message"},
      {prepare_chat_completion, R"({"messages": [{"role": "robot", "content": "x"}]})", "messages[0].role", "'robot'"},
      {prepare_chat_completion, R"({"messages": [{"content": "x"}]})", "messages[0].role", "missing"},
      {prepare_chat_completion, R"({"messages": [{"role": "user", "content": 5}]})", "messages[0].content", "got 5"},
      {prepare_chat_completion, R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})",
       "messages[0].content[0].type", "only text"},
      {prepare_chat_completion, R"({"messages": [{"role": "user", "content": "x"}], "n": 2})", "n", "must be 1"},
      {prepare_chat_completion, R"({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0})", "max_tokens", "between 1 and 256"},
      {prepare_chat_completion, R"({"messages": [{"role": "user", "content": "x"}], "max_tokens": 257})", "max_tokens", "got 257"},
      {prepare_chat_completion, R"({"messages": [{"role": "user", "content": "x"}], "temperature": -0.1})", "temperature", "between 0"},
      {prepare_chat_completion, R"({"messages": [{"role": "user", "content": "x"}], "top_p": 1.5})", "top_p", "between 0 and 1"},
      {prepare_chat_completion, R"({"messages": [{"role": "user", "content": "x"}], "stream": "yes"})", "stream", "a boolean"},
      {prepare_chat_completion, R"({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2})", "top_logprobs", "logprobs"},
      {prepare_chat_completion, R"({"messages": [{"role": "user", "content": "x"}], "logprobs": true, "top_logprobs": 21})", "top_logprobs", "between 0 and 20"},
      {prepare_chat_completion, R"({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]})", "tools", "not supported"},
      {prepare_chat_completion, R"({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}})", "response_format", "not supported"},
      {prepare_chat_completion, R"({"messages": [{"role": "user", "content": "x"}], "logit_bias": {"5": 1}})", "logit_bias", "not supported"},
      {prepare_chat_completion, R"({"messages": [{"role": "user", "content": "x"}], "stop": ["a", 1]})", "stop", "array of strings"},
      {prepare_chat_completion, R"({"messages": [{"role": "user", "content": "x"}], "model": 3})", "model", "a string"},
      {prepare_completion, R"({})", "prompt", "'prompt' is missing"},
      {prepare_completion, R"({"prompt": ["a", "b"]})", "prompt", "2 prompts"},
      {prepare_completion, R"({"prompt": [1, -2]})", "prompt[1]", "token id"},
      {prepare_completion, R"({"prompt": [1, 2.5]})", "prompt[1]", "token id"},
      {prepare_completion, R"({"prompt": "x", "echo": true})", "echo", "not supported"},
      {prepare_completion, R"({"prompt": "x", "best_of": 3})", "best_of", "must be 1"},
  };
  for (const Case& c : cases) {
    const ApiError e = refusal(c.prepare, c.body);
    EXPECT_EQ(e.status, 400) << c.body;
    EXPECT_EQ(e.type, "invalid_request_error") << c.body;
    EXPECT_EQ(e.param, c.param) << c.body;
    EXPECT_THAT(e.what(), HasSubstr(c.message)) << c.body;
  }
}

// The data lines of an SSE text, in order.
std::vector<std::string> sse_data(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("data: ", 0) == 0) out.push_back(line.substr(6));
    else EXPECT_EQ(line, "") << "not SSE framing: " << line;
  }
  return out;
}

RequestEvent event_of(std::string text, FinishReason finish = FinishReason::None) {
  RequestEvent e;
  e.text = std::move(text);
  e.tokens.push_back(GeneratedToken{9707, -0.5f, {{9707, -0.5f}, {1879, -1.5f}}});
  e.finish = finish;
  if (finish != FinishReason::None) {
    e.stats.prompt_tokens = 10;
    e.stats.cached_tokens = 4;
    e.stats.generated_tokens = 3;
    e.stats.prompt_seconds = 0.02;
    e.stats.decode_seconds = 0.5;
  }
  return e;
}

TEST(OpenAiResponse, ChatStreamRoleFirstThenDeltasFinishUsageAndDone) {
  Generation g = prepare_chat_completion(
      json::parse(R"({"messages": [{"role": "user", "content": "x"}], "stream": true, "stream_options": {"include_usage": true}})"),
      context());
  std::string wire = g.shape->stream_event(event_of("Hel"));
  wire += g.shape->stream_event(event_of("lo", FinishReason::Stop));
  const std::vector<std::string> data = sse_data(wire);
  ASSERT_EQ(data.size(), 6u);
  const json role = json::parse(data[0]);
  EXPECT_EQ(role["object"], "chat.completion.chunk");
  EXPECT_EQ(role["choices"][0]["delta"], (json{{"role", "assistant"}, {"content", ""}}));
  EXPECT_EQ(json::parse(data[1])["choices"][0]["delta"]["content"], "Hel");
  EXPECT_TRUE(json::parse(data[1])["usage"].is_null());
  EXPECT_EQ(json::parse(data[2])["choices"][0]["delta"]["content"], "lo");
  const json last = json::parse(data[3]);
  EXPECT_EQ(last["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(last["timings"]["prompt_n"], 6);
  EXPECT_EQ(last["timings"]["cache_n"], 4);
  const json usage = json::parse(data[4]);
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"], (json{{"prompt_tokens", 10}, {"completion_tokens", 3}, {"total_tokens", 13},
                                  {"prompt_tokens_details", {{"cached_tokens", 4}}}}));
  EXPECT_EQ(data[5], "[DONE]");
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(json::parse(data[i])["id"], role["id"]);
}

TEST(OpenAiResponse, WholeBodiesCarryUsageTimingsAndLogprobs) {
  Generation chat = prepare_chat_completion(
      json::parse(R"({"messages": [{"role": "user", "content": "x"}], "logprobs": true, "top_logprobs": 2})"), context());
  Outcome outcome;
  outcome.add(event_of("Hello"));
  outcome.add(event_of("", FinishReason::Length));
  const json body = chat.shape->body(outcome);
  EXPECT_EQ(body["object"], "chat.completion");
  EXPECT_EQ(body["choices"][0]["message"], (json{{"role", "assistant"}, {"content", "Hello"}}));
  EXPECT_EQ(body["choices"][0]["finish_reason"], "length");
  const json& first = body["choices"][0]["logprobs"]["content"][0];
  EXPECT_EQ(first["token"], "Hello");
  EXPECT_EQ(first["bytes"], (json{72, 101, 108, 108, 111}));
  EXPECT_FLOAT_EQ(first["logprob"].get<float>(), -0.5f);
  EXPECT_EQ(first["top_logprobs"][1]["token"], " world");
  EXPECT_EQ(body["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
  // llama-server's definitions: per token = ms / n, per second = n / s.
  EXPECT_DOUBLE_EQ(body["timings"]["predicted_ms"].get<double>(), 500.0);
  EXPECT_DOUBLE_EQ(body["timings"]["predicted_per_second"].get<double>(), 6.0);
  EXPECT_DOUBLE_EQ(body["timings"]["prompt_per_token_ms"].get<double>(), 20.0 / 6);

  Generation completion = prepare_completion(json::parse(R"({"prompt": "x", "logprobs": 1})"), context());
  const json text = completion.shape->body(outcome);
  EXPECT_EQ(text["object"], "text_completion");
  EXPECT_EQ(text["choices"][0]["text"], "Hello");
  EXPECT_EQ(text["choices"][0]["logprobs"]["tokens"], (json{"Hello", "Hello"}));
  EXPECT_EQ(text["choices"][0]["logprobs"]["text_offset"], (json{0, 5}));
  EXPECT_FLOAT_EQ(text["choices"][0]["logprobs"]["top_logprobs"][0][" world"].get<float>(), -1.5f);
}

TEST(OpenAiResponse, StreamErrorIsAnErrorObjectThenDone) {
  Generation g = prepare_completion(json::parse(R"({"prompt": "x", "stream": true})"), context());
  const std::vector<std::string> data = sse_data(g.shape->stream_error(unavailable("going away", "shutting_down")));
  ASSERT_EQ(data.size(), 2u);
  EXPECT_EQ(json::parse(data[0])["error"]["code"], "shutting_down");
  EXPECT_EQ(data[1], "[DONE]");
}

TEST(OllamaRequest, OptionsMapAndLimitsFollowNumPredictAndNumCtx) {
  const Generation g = prepare_ollama_generate(json::parse(R"({"model": "m", "prompt": "Hello", "system": "S",
      "options": {"temperature": 0, "top_k": 5, "top_p": 0.5, "min_p": 0.2, "seed": 7, "stop": ["x"],
                  "repeat_penalty": 1.3, "repeat_last_n": 16, "num_predict": 1000, "num_ctx": 100}})"),
                                               context(256));
  const std::vector<ChatMessage> messages{{"system", "S"}, {"user", "Hello"}};
  EXPECT_EQ(g.request.prompt, chat_prompt(qwen2_tokenizer(), messages).tokens);
  const GenerationOptions& o = g.request.options;
  EXPECT_EQ(o.sampling.temperature, 0.0f);
  EXPECT_EQ(o.sampling.top_k, 5);
  EXPECT_EQ(o.sampling.seed, 7u);
  EXPECT_EQ(o.sampling.penalty_last_n, 16);
  EXPECT_FLOAT_EQ(o.sampling.repeat_penalty, 1.3f);
  EXPECT_EQ(o.stop, std::vector<std::string>{"x"});
  EXPECT_EQ(o.max_tokens, 100 - static_cast<int>(g.request.prompt.size()));  // num_ctx bounds num_predict
  EXPECT_TRUE(g.stream);  // Ollama streams unless told not to

  const Generation raw = prepare_ollama_generate(json::parse(R"({"prompt": "Hello", "raw": true, "stream": false})"), context(256));
  EXPECT_EQ(raw.request.prompt, text_prompt(qwen2_tokenizer(), "Hello"));
  EXPECT_EQ(raw.request.options.max_tokens, 256 - static_cast<int>(raw.request.prompt.size()));  // num_predict -1
  EXPECT_FALSE(raw.stream);
}

TEST(OllamaRequest, EmptyPromptOnlyLoadsAndLongPromptsAreRefused) {
  const Generation load = prepare_ollama_chat(json::parse(R"({"model": "m", "messages": []})"), context());
  ASSERT_TRUE(load.immediate.has_value());
  EXPECT_EQ((*load.immediate)["done_reason"], "load");
  EXPECT_EQ((*load.immediate)["done"], true);
  try {
    prepare_ollama_generate(json::parse(R"({"prompt": "one two three four five six", "raw": true, "options": {"num_ctx": 3}})"),
                            context());
    ADD_FAILURE() << "a prompt longer than num_ctx was accepted";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(e.code, "context_length_exceeded");
    EXPECT_THAT(e.what(), HasSubstr("the context holds 3"));
  }
  const ApiError format = refusal(prepare_ollama_chat, R"({"messages": [{"role": "user", "content": "x"}], "format": "json"})");
  EXPECT_EQ(format.param, "format");
  const ApiError images = refusal(prepare_ollama_chat, R"({"messages": [{"role": "user", "content": "x", "images": ["AAAA"]}]})");
  EXPECT_EQ(images.param, "messages[0].images");
  const ApiError parts = refusal(prepare_ollama_chat, R"({"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]})");
  EXPECT_EQ(parts.param, "messages[0].content");
}

TEST(OllamaResponse, NdjsonLinesAndNanosecondDurations) {
  Generation g = prepare_ollama_chat(json::parse(R"({"messages": [{"role": "user", "content": "x"}]})"), context());
  std::string wire = g.shape->stream_event(event_of("Hi"));
  wire += g.shape->stream_event(event_of("!", FinishReason::Stop));
  std::vector<json> lines;
  std::istringstream in(wire);
  for (std::string line; std::getline(in, line);) lines.push_back(json::parse(line));
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0]["message"], (json{{"role", "assistant"}, {"content", "Hi"}}));
  EXPECT_EQ(lines[0]["done"], false);
  EXPECT_EQ(lines[1]["message"]["content"], "!");
  EXPECT_EQ(lines[2]["done"], true);
  EXPECT_EQ(lines[2]["done_reason"], "stop");
  EXPECT_EQ(lines[2]["eval_count"], 3);
  EXPECT_EQ(lines[2]["eval_duration"], 500'000'000);
  EXPECT_EQ(lines[2]["prompt_eval_count"], 10);
  EXPECT_EQ(lines[2]["prompt_eval_duration"], 20'000'000);
  EXPECT_EQ(wire.back(), '\n');
  EXPECT_EQ(json::parse(g.shape->stream_error(bad_request("nope"))), (json{{"error", "nope"}}));
}

TEST(ApiErrors, RequestErrorsMapToStatusesAndCodes) {
  const ApiError invalid = from_request_error(RequestError(RequestError::Code::InvalidRequest, "bad id"), "prompt");
  EXPECT_EQ(invalid.status, 400);
  EXPECT_EQ(invalid.param, "");
  const ApiError context_error =
      from_request_error(RequestError(RequestError::Code::ContextLengthExceeded, "too long"), "messages");
  EXPECT_EQ(context_error.status, 400);
  EXPECT_EQ(context_error.code, "context_length_exceeded");
  EXPECT_EQ(context_error.param, "messages");
  const ApiError full = from_request_error(RequestError(RequestError::Code::QueueFull, "full"), "prompt");
  EXPECT_EQ(full.status, 503);
  EXPECT_EQ(full.retry_after, 1);
  EXPECT_EQ(from_request_error(RequestError(RequestError::Code::ShuttingDown, "bye"), "prompt").code, "shutting_down");
  EXPECT_EQ(openai_error_body(context_error),
            (json{{"error", {{"message", "too long"}, {"type", "invalid_request_error"}, {"param", "messages"},
                             {"code", "context_length_exceeded"}}}}));
  EXPECT_EQ(ollama_error_body(full), (json{{"error", "full"}}));
  EXPECT_EQ(to_wire(json("a\xe2\x82")), "\"a\xef\xbf\xbd\"");  // a cut UTF-8 sequence is replaced
}

TEST(Prometheus, HistogramsAreCumulativeAndLabelsEscaped) {
  EngineMetrics m;
  m.kv_blocks_total = 8;
  m.kv_blocks_used = 2;
  m.requests_finished["cancelled"] = 3;
  m.time_to_first_token = Histogram({0.1, 1});
  for (const double v : {0.05, 0.5, 0.7, 5.0}) m.time_to_first_token.observe(v);
  const std::string text = prometheus_text(m, "a\"b", {{200, 5}});
  const std::string label = "model_name=\"a\\\"b\"";
  EXPECT_THAT(text, HasSubstr("realizar:kv_cache_usage_perc{" + label + "} 0.25\n"));
  EXPECT_THAT(text, HasSubstr("realizar:time_to_first_token_seconds_bucket{" + label + ",le=\"0.1\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("realizar:time_to_first_token_seconds_bucket{" + label + ",le=\"1\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("realizar:time_to_first_token_seconds_bucket{" + label + ",le=\"+Inf\"} 4\n"));
  EXPECT_THAT(text, HasSubstr("realizar:time_to_first_token_seconds_count{" + label + "} 4\n"));
  EXPECT_THAT(text, HasSubstr("realizar:time_to_first_token_seconds_sum{" + label + "} 6.25\n"));
  EXPECT_THAT(text, HasSubstr("realizar:request_success_total{" + label + ",finished_reason=\"abort\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("realizar:http_responses_total{code=\"200\"} 5\n"));
  EXPECT_EQ(escape_label_value("a\\b\n"), "a\\\\b\\n");
}

TEST(ConnectionProbe, FindsALoopbackConnectionAndSeesItsPeerLeave) {
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(listener, 1), 0);
  socklen_t length = sizeof(addr);
  getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &length);
  const int client = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_EQ(connect(client, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  const int server_side = accept(listener, nullptr, nullptr);
  ASSERT_GE(server_side, 0);
  sockaddr_in client_addr{};
  length = sizeof(client_addr);
  getsockname(client, reinterpret_cast<sockaddr*>(&client_addr), &length);

  const Endpoints endpoints{"127.0.0.1", ntohs(addr.sin_port), "127.0.0.1", ntohs(client_addr.sin_port)};
  const ConnectionProbe probe(endpoints);
  EXPECT_TRUE(probe.found());
  EXPECT_FALSE(probe.client_gone());
  ASSERT_EQ(write(client, "GET", 3), 3);  // data waiting to be read is not a hang-up
  EXPECT_FALSE(probe.client_gone());
  close(client);
  EXPECT_TRUE(probe.client_gone());
  EXPECT_FALSE(ConnectionProbe(Endpoints{"127.0.0.1", 1, "127.0.0.1", 2}).found());
  close(server_side);
  close(listener);
}

}  // namespace
}  // namespace realizar::server
