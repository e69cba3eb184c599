#include "server/openai_api.h"

#include <ctime>
#include <limits>

#include "realizar/prompt.h"
#include "server/json_fields.h"

namespace realizar::server {
namespace {

using nlohmann::json;

constexpr size_t kMaxStops = 16;          // OpenAI allows 4; vLLM any number
constexpr int64_t kMaxTopLogprobs = 20;   // OpenAI's limit, and the engine's
constexpr int64_t kCompletionMaxTokens = 16;  // OpenAI's default for /v1/completions

enum class Api { Chat, Completion };

[[noreturn]] void unsupported(const std::string& field, const std::string& what) {
  throw bad_request(fmt::format("'{}': {} is not supported", field, what), field);
}

// Fields OpenAI defines that this server does not implement are refused, not ignored: ignoring
// them would silently change what the client gets.
void refuse_unsupported(const Fields& f, Api api) {
  if (const auto n = f.integer("n", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max());
      n && *n != 1) {
    throw bad_request(fmt::format("'n' must be 1 (one choice per request), got {}", *n), "n");
  }
  if (const json* bias = f.find("logit_bias"); bias && !bias->empty()) unsupported("logit_bias", "logit_bias");
  if (api == Api::Chat) {
    if (const json* tools = f.find("tools"); tools && !tools->empty()) unsupported("tools", "tool calling");
    if (const json* functions = f.find("functions"); functions && !functions->empty()) {
      unsupported("functions", "function calling");
    }
    if (const auto format = f.object("response_format")) {
      const std::string type = format->string("type").value_or("text");
      if (type != "text") unsupported("response_format", fmt::format("response_format '{}'", type));
    }
  } else {
    if (f.boolean("echo").value_or(false)) unsupported("echo", "echo");
    if (!f.string("suffix").value_or("").empty()) unsupported("suffix", "suffix (insertion)");
    if (const auto best_of = f.integer("best_of", 1, std::numeric_limits<int64_t>::max()); best_of && *best_of != 1) {
      throw bad_request(fmt::format("'best_of' must be 1, got {}", *best_of), "best_of");
    }
  }
}

void read_sampling(const Fields& f, SamplingParams& s) {
  if (const auto v = f.number("temperature", 0, 1000)) s.temperature = static_cast<float>(*v);
  if (const auto v = f.number("top_p", 0, 1)) s.top_p = static_cast<float>(*v);
  if (const auto v = f.integer("top_k", -1, std::numeric_limits<int32_t>::max())) s.top_k = std::max<int>(0, static_cast<int>(*v));
  if (const auto v = f.number("min_p", 0, 1)) s.min_p = static_cast<float>(*v);
  if (const auto v = f.number("presence_penalty", -2, 2)) s.presence_penalty = static_cast<float>(*v);
  if (const auto v = f.number("frequency_penalty", -2, 2)) s.frequency_penalty = static_cast<float>(*v);
  if (const auto v = f.number("repetition_penalty", 0, 1000)) {
    if (*v == 0) throw bad_request("'repetition_penalty' must be greater than 0, got 0", "repetition_penalty");
    s.repeat_penalty = static_cast<float>(*v);
  }
  const auto seed = f.integer("seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max());
  s.seed = seed ? static_cast<uint64_t>(*seed) : random_seed();
}

// max_completion_tokens replaced max_tokens in OpenAI's chat API; clients send either. More
// than the context could ever hold is refused; a value that only the prompt makes too large
// ends with finish_reason "length" when the context is full.
int max_tokens(const Fields& f, const ModelContext& model, int64_t fallback) {
  for (const char* key : {"max_completion_tokens", "max_tokens"}) {
    if (const auto v = f.integer(key, 1, model.context_length)) return static_cast<int>(*v);
  }
  return static_cast<int>(fallback);
}

std::vector<int32_t> token_ids(const json& array, const std::string& field) {
  std::vector<int32_t> ids;
  for (size_t i = 0; i < array.size(); ++i) {
    const json& v = array[i];
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > std::numeric_limits<int32_t>::max()) {
      const std::string where = fmt::format("{}[{}]", field, i);
      throw bad_request(fmt::format("'{}' must be a token id (an integer of at least 0), got {}", where, v.dump()), where);
    }
    ids.push_back(static_cast<int32_t>(v.get<int64_t>()));
  }
  return ids;
}

// "prompt": a string, an array of token ids, or an array holding one string or one array of ids
// (OpenAI's batch forms, with a batch of one).
std::vector<int32_t> completion_prompt(const json& prompt, const ModelContext& model) {
  if (prompt.is_string()) return text_prompt(model.tokenizer, prompt.get<std::string>());
  if (!prompt.is_array() || prompt.empty()) {
    throw bad_request(fmt::format("'prompt' must be a string or an array of token ids, got {}",
                                  prompt.is_array() ? "an empty array" : describe_json(prompt)),
                      "prompt");
  }
  if (prompt[0].is_string() || prompt[0].is_array()) {
    if (prompt.size() != 1) {
      throw bad_request(fmt::format("'prompt' holds {} prompts; send one prompt per request", prompt.size()), "prompt");
    }
    if (prompt[0].is_string()) return text_prompt(model.tokenizer, prompt[0].get<std::string>());
    return token_ids(prompt[0], "prompt[0]");
  }
  return token_ids(prompt, "prompt");
}

json token_bytes(const std::string& piece) {
  json bytes = json::array();
  for (const char c : piece) bytes.push_back(static_cast<unsigned char>(c));
  return bytes;
}

// Chat logprobs: {"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}, ...]}.
json chat_logprobs(const std::vector<GeneratedToken>& tokens, const Tokenizer& tokenizer) {
  json content = json::array();
  for (const GeneratedToken& t : tokens) {
    const std::string piece = tokenizer.token_piece(t.id);
    json top = json::array();
    for (const TokenLogprob& alt : t.top) {
      const std::string alt_piece = tokenizer.token_piece(alt.token);
      top.push_back({{"token", alt_piece}, {"logprob", alt.logprob}, {"bytes", token_bytes(alt_piece)}});
    }
    content.push_back({{"token", piece}, {"logprob", t.logprob}, {"bytes", token_bytes(piece)}, {"top_logprobs", top}});
  }
  return {{"content", content}};
}

// Completion logprobs (the legacy shape): parallel arrays, text_offset counted in bytes of the
// generated text from the start of the completion.
json completion_logprobs(const std::vector<GeneratedToken>& tokens, const Tokenizer& tokenizer, size_t& text_offset) {
  json out = {{"tokens", json::array()}, {"token_logprobs", json::array()}, {"top_logprobs", json::array()},
              {"text_offset", json::array()}};
  for (const GeneratedToken& t : tokens) {
    const std::string piece = tokenizer.token_piece(t.id);
    out["tokens"].push_back(piece);
    out["token_logprobs"].push_back(t.logprob);
    json top = json::object();
    for (const TokenLogprob& alt : t.top) top[tokenizer.token_piece(alt.token)] = alt.logprob;
    out["top_logprobs"].push_back(top);
    out["text_offset"].push_back(text_offset);
    text_offset += piece.size();
  }
  return out;
}

std::string sse(const json& data) { return "data: " + to_wire(data) + "\n\n"; }

class OpenAiShape : public ResponseShape {
 public:
  OpenAiShape(Api api, const ModelContext& model, bool include_usage, int top_logprobs)
      : api_(api), tokenizer_(model.tokenizer), model_(model.alias), include_usage_(include_usage),
        top_logprobs_(top_logprobs), id_(random_id(api == Api::Chat ? "chatcmpl-" : "cmpl-")),
        created_(static_cast<int64_t>(std::time(nullptr))) {}

  std::string stream_content_type() const override { return "text/event-stream"; }
  std::string id() const override { return id_; }

  std::string stream_event(const RequestEvent& event) override {
    std::string out;
    if (api_ == Api::Chat && !role_sent_) {
      out += sse(chunk({{"role", "assistant"}, {"content", ""}}, json(), json()));
      role_sent_ = true;
    }
    const bool with_logprobs = top_logprobs_ >= 0 && !event.tokens.empty();
    if (!event.text.empty() || with_logprobs) {
      out += sse(chunk(api_ == Api::Chat ? json{{"content", event.text}} : json(event.text),
                       with_logprobs ? logprobs(event.tokens) : json(), json()));
    }
    if (event.finish == FinishReason::None) return out;
    json last = chunk(api_ == Api::Chat ? json::object() : json(""), json(), wire_finish_reason(event.finish, "OpenAI"));
    last["timings"] = timings_json(event.stats);
    out += sse(last);
    if (include_usage_) {
      json usage = envelope(true);
      usage["choices"] = json::array();
      usage["usage"] = usage_json(event.stats);
      out += sse(usage);
    }
    return out + "data: [DONE]\n\n";
  }

  std::string stream_error(const ApiError& error) override {
    return sse(openai_error_body(error)) + "data: [DONE]\n\n";
  }

  json body(const Outcome& outcome) override {
    json response = envelope(false);
    json choice = {{"index", 0},
                   {"logprobs", top_logprobs_ >= 0 ? logprobs(outcome.tokens) : json()},
                   {"finish_reason", wire_finish_reason(outcome.finish, "OpenAI")}};
    if (api_ == Api::Chat) {
      choice["message"] = {{"role", "assistant"}, {"content", outcome.text}};
    } else {
      choice["text"] = outcome.text;
    }
    response["choices"] = json::array({choice});
    response["usage"] = usage_json(outcome.stats);
    response["timings"] = timings_json(outcome.stats);
    return response;
  }

  json error_body(const ApiError& error) const override { return openai_error_body(error); }

 private:
  json envelope(bool chunk) const {
    const char* object = api_ == Api::Chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion";
    return {{"id", id_}, {"object", object}, {"created", created_}, {"model", model_},
            {"system_fingerprint", "realizar"}};
  }

  // One streamed chunk: `delta` is the chat delta object, or the completion's text.
  json chunk(json delta, json logprobs, json finish_reason) const {
    json c = envelope(true);
    json choice = {{"index", 0}, {"logprobs", std::move(logprobs)}, {"finish_reason", std::move(finish_reason)}};
    choice[api_ == Api::Chat ? "delta" : "text"] = std::move(delta);
    c["choices"] = json::array({choice});
    if (include_usage_) c["usage"] = json();
    return c;
  }

  json logprobs(const std::vector<GeneratedToken>& tokens) {
    return api_ == Api::Chat ? chat_logprobs(tokens, tokenizer_) : completion_logprobs(tokens, tokenizer_, text_offset_);
  }

  Api api_;
  const Tokenizer& tokenizer_;
  std::string model_;
  bool include_usage_;
  int top_logprobs_;
  std::string id_;
  int64_t created_;
  bool role_sent_ = false;
  size_t text_offset_ = 0;
};

// "stream" and "stream_options" (read only when streaming, as OpenAI does).
void read_stream(const Fields& f, Generation& g, bool& include_usage) {
  g.stream = f.boolean("stream").value_or(false);
  include_usage = false;
  if (!g.stream) return;
  if (const auto options = f.object("stream_options")) include_usage = options->boolean("include_usage").value_or(false);
}

void read_common(const Fields& f, Api api, const ModelContext& model, int64_t default_max_tokens, Generation& g) {
  f.string("model");  // type-checked; the one model served answers whatever name is asked for
  f.string("user");
  refuse_unsupported(f, api);
  GenerationOptions& o = g.request.options;
  read_sampling(f, o.sampling);
  o.max_tokens = max_tokens(f, model, default_max_tokens);
  o.stop = f.string_or_strings("stop", kMaxStops);
}

}  // namespace

Generation prepare_chat_completion(const json& body, const ModelContext& model) {
  const Fields f(body);
  Generation g;
  read_common(f, Api::Chat, model, model.context_length, g);
  const json* messages = f.find("messages");
  if (!messages) throw bad_request("'messages' is missing", "messages");
  g.request.prompt = render_chat_prompt(model, parse_chat_messages(*messages, "messages", true), "messages");
  g.prompt_field = "messages";
  const bool logprobs = f.boolean("logprobs").value_or(false);
  const auto top = f.integer("top_logprobs", 0, kMaxTopLogprobs);
  if (top && !logprobs) throw bad_request("'top_logprobs' needs 'logprobs': true", "top_logprobs");
  g.request.options.top_logprobs = logprobs ? static_cast<int>(top.value_or(0)) : -1;
  bool include_usage = false;
  read_stream(f, g, include_usage);
  g.shape = std::make_unique<OpenAiShape>(Api::Chat, model, include_usage, g.request.options.top_logprobs);
  return g;
}

Generation prepare_completion(const json& body, const ModelContext& model) {
  const Fields f(body);
  Generation g;
  read_common(f, Api::Completion, model, std::min(kCompletionMaxTokens, model.context_length), g);
  const json* prompt = f.find("prompt");
  if (!prompt) throw bad_request("'prompt' is missing", "prompt");
  g.request.prompt = completion_prompt(*prompt, model);
  g.prompt_field = "prompt";
  const auto logprobs = f.integer("logprobs", 0, kMaxTopLogprobs);
  g.request.options.top_logprobs = logprobs ? static_cast<int>(*logprobs) : -1;
  bool include_usage = false;
  read_stream(f, g, include_usage);
  g.shape = std::make_unique<OpenAiShape>(Api::Completion, model, include_usage, g.request.options.top_logprobs);
  return g;
}

json models_list(const ModelCard& card) {
  json model = {{"id", card.alias},
                {"object", "model"},
                {"created", card.modified_unix},
                {"owned_by", "realizar"},
                {"max_model_len", card.context_length},
                {"meta",
                 {{"n_ctx_train", card.training_context},
                  {"n_params", card.parameter_count},
                  {"size", card.size_bytes},
                  {"family", card.family},
                  {"quantization", card.quantization_level}}}};
  return {{"object", "list"}, {"data", json::array({model})}};
}

json usage_json(const RequestStats& s) {
  return {{"prompt_tokens", s.prompt_tokens},
          {"completion_tokens", s.generated_tokens},
          {"total_tokens", s.prompt_tokens + s.generated_tokens},
          {"prompt_tokens_details", {{"cached_tokens", s.cached_tokens}}}};
}

json timings_json(const RequestStats& s) {
  const auto per_token_ms = [](double ms, int64_t n) { return n > 0 ? ms / static_cast<double>(n) : 0.0; };
  const auto per_second = [](double ms, int64_t n) { return ms > 0 ? 1e3 * static_cast<double>(n) / ms : 0.0; };
  const int64_t prompt_n = s.prompt_tokens - s.cached_tokens;
  const double prompt_ms = s.prompt_seconds * 1e3;
  const double predicted_ms = s.decode_seconds * 1e3;
  return {{"cache_n", s.cached_tokens},
          {"prompt_n", prompt_n},
          {"prompt_ms", prompt_ms},
          {"prompt_per_token_ms", per_token_ms(prompt_ms, prompt_n)},
          {"prompt_per_second", per_second(prompt_ms, prompt_n)},
          {"predicted_n", s.generated_tokens},
          {"predicted_ms", predicted_ms},
          {"predicted_per_token_ms", per_token_ms(predicted_ms, s.generated_tokens)},
          {"predicted_per_second", per_second(predicted_ms, s.generated_tokens)}};
}

json tokenize(const json& body, const Tokenizer& tokenizer) {
  const Fields f(body);
  const std::optional<std::string> content = f.string("content");
  if (!content) throw bad_request("'content' is missing", "content");
  const bool add_special = f.boolean("add_special").value_or(false);
  const bool parse_special = f.boolean("parse_special").value_or(true);
  const bool with_pieces = f.boolean("with_pieces").value_or(false);
  const std::vector<int32_t> ids = tokenizer.encode(*content, add_special, parse_special);
  json tokens = json::array();
  for (const int32_t id : ids) {
    if (with_pieces) {
      tokens.push_back({{"id", id}, {"piece", tokenizer.token_piece(id)}});
    } else {
      tokens.push_back(id);
    }
  }
  return {{"tokens", tokens}};
}

json detokenize(const json& body, const Tokenizer& tokenizer) {
  const Fields f(body);
  const json* tokens = f.find("tokens");
  if (!tokens) throw bad_request("'tokens' is missing", "tokens");
  if (!tokens->is_array()) {
    throw bad_request(fmt::format("'tokens' must be an array of token ids, got {}", describe_json(*tokens)), "tokens");
  }
  const std::vector<int32_t> ids = token_ids(*tokens, "tokens");
  for (size_t i = 0; i < ids.size(); ++i) {
    if (static_cast<size_t>(ids[i]) >= tokenizer.vocab_size()) {
      throw bad_request(fmt::format("'tokens[{}]' is {}, outside the vocabulary (size {})", i, ids[i],
                                    tokenizer.vocab_size()),
                        fmt::format("tokens[{}]", i));
    }
  }
  return {{"content", tokenizer.decode(ids)}};
}

}  // namespace realizar::server
