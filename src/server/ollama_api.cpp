#include "server/ollama_api.h"

#include <limits>

#include "realizar/prompt.h"
#include "server/json_fields.h"

namespace realizar::server {
namespace {

using nlohmann::json;

constexpr size_t kMaxStops = 16;
constexpr const char* kOllamaApiVersion = "0.6.0";  // the API shapes followed (done_reason, durations)

enum class Api { Chat, Generate };

int64_t nanoseconds(double seconds) { return static_cast<int64_t>(seconds * 1e9); }

class OllamaShape : public ResponseShape {
 public:
  OllamaShape(Api api, std::string model) : api_(api), model_(std::move(model)) {}

  std::string stream_content_type() const override { return "application/x-ndjson"; }
  std::string id() const override { return {}; }

  std::string stream_event(const RequestEvent& event) override {
    std::string out;
    if (!event.text.empty()) out += line(piece(event.text, false));
    if (event.finish == FinishReason::None) return out;
    return out + line(final_piece("", event.finish, event.stats));
  }

  std::string stream_error(const ApiError& error) override { return line(ollama_error_body(error)); }

  json body(const Outcome& outcome) override { return final_piece(outcome.text, outcome.finish, outcome.stats); }

  json error_body(const ApiError& error) const override { return ollama_error_body(error); }

  // What Ollama answers a request with nothing to generate (it loads the model and returns).
  json loaded() const {
    json r = piece("", true);
    r["done_reason"] = "load";
    return r;
  }

 private:
  static std::string line(const json& value) { return to_wire(value) + "\n"; }

  json piece(const std::string& text, bool done) const {
    json r = {{"model", model_}, {"created_at", rfc3339_utc_now()}};
    if (api_ == Api::Chat) {
      r["message"] = {{"role", "assistant"}, {"content", text}};
    } else {
      r["response"] = text;
    }
    r["done"] = done;
    return r;
  }

  json final_piece(const std::string& text, FinishReason finish, const RequestStats& s) const {
    json r = piece(text, true);
    r["done_reason"] = wire_finish_reason(finish, "Ollama");
    r["total_duration"] = nanoseconds(s.total_seconds);
    r["load_duration"] = 0;  // the model was loaded when the server started
    r["prompt_eval_count"] = s.prompt_tokens;
    r["prompt_eval_duration"] = nanoseconds(s.prompt_seconds);
    r["eval_count"] = s.generated_tokens;
    r["eval_duration"] = nanoseconds(s.decode_seconds);
    return r;
  }

  Api api_;
  std::string model_;
};

struct OllamaOptions {
  GenerationOptions generation;
  int64_t num_predict = -1;  // -1, -2: until the context is full
  int64_t num_ctx = 0;       // 0: the server's
};

OllamaOptions read_options(const Fields& body) {
  OllamaOptions out;
  SamplingParams& s = out.generation.sampling;
  s.seed = random_seed();
  const std::optional<Fields> f = body.object("options");
  if (!f) return out;
  if (const auto v = f->number("temperature", 0, 1000)) s.temperature = static_cast<float>(*v);
  if (const auto v = f->integer("top_k", -1, std::numeric_limits<int32_t>::max())) s.top_k = std::max<int>(0, static_cast<int>(*v));
  if (const auto v = f->number("top_p", 0, 1)) s.top_p = static_cast<float>(*v);
  if (const auto v = f->number("min_p", 0, 1)) s.min_p = static_cast<float>(*v);
  if (const auto v = f->number("repeat_penalty", 0, 1000)) {
    if (*v == 0) throw bad_request("'options.repeat_penalty' must be greater than 0, got 0", "options.repeat_penalty");
    s.repeat_penalty = static_cast<float>(*v);
  }
  if (const auto v = f->number("presence_penalty", -2, 2)) s.presence_penalty = static_cast<float>(*v);
  if (const auto v = f->number("frequency_penalty", -2, 2)) s.frequency_penalty = static_cast<float>(*v);
  if (const auto v = f->integer("seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max())) {
    s.seed = static_cast<uint64_t>(*v);
  }
  if (const auto v = f->integer("num_predict", -2, std::numeric_limits<int32_t>::max())) {
    if (*v == 0) throw bad_request("'options.num_predict' must be at least 1 (or -1, -2), got 0", "options.num_predict");
    out.num_predict = *v;
  }
  if (const auto v = f->integer("num_ctx", 1, std::numeric_limits<int32_t>::max())) out.num_ctx = *v;
  out.generation.stop = f->string_or_strings("stop", kMaxStops);
  // repeat_last_n: -1 means the whole context, as in Ollama; penalty_last_n = 0 turns penalties off.
  if (const auto v = f->integer("repeat_last_n", -1, std::numeric_limits<int32_t>::max())) {
    out.generation.sampling.penalty_last_n = static_cast<int>(*v);
  }
  return out;
}

void refuse_unsupported(const Fields& f, Api api) {
  const auto refuse = [](const std::string& field, const std::string& what) {
    throw bad_request(fmt::format("'{}': {} is not supported", field, what), field);
  };
  if (const json* format = f.find("format"); format && !(format->is_string() && format->get<std::string>().empty())) {
    refuse("format", "constrained output (format)");
  }
  if (const json* tools = f.find("tools"); tools && !tools->empty()) refuse("tools", "tool calling");
  if (api == Api::Generate) {
    if (!f.string("suffix").value_or("").empty()) refuse("suffix", "suffix (insertion)");
    if (!f.string("template").value_or("").empty()) refuse("template", "a custom prompt template");
    if (const json* images = f.find("images"); images && !images->empty()) refuse("images", "images");
    if (const json* context = f.find("context"); context && !context->empty()) refuse("context", "context");
  }
}

// The request's generation limits from num_predict and num_ctx: a per-request context larger than
// the server's is the server's (the pool was sized for it).
void apply_limits(const OllamaOptions& o, const ModelContext& model, const std::string& field, Request& request) {
  const int64_t context = o.num_ctx > 0 ? std::min(o.num_ctx, model.context_length) : model.context_length;
  check_prompt_fits(request.prompt.size(), context, field);
  const int64_t room = context - static_cast<int64_t>(request.prompt.size());
  request.options.max_tokens = static_cast<int>(o.num_predict > 0 ? std::min(o.num_predict, room) : room);
}

Generation prepare(const json& body, const ModelContext& model, Api api) {
  const Fields f(body);
  f.string("model");  // type-checked; the one model served answers whatever name is asked for
  refuse_unsupported(f, api);
  OllamaOptions options = read_options(f);
  Generation g;
  g.stream = f.boolean("stream").value_or(true);
  auto shape = std::make_unique<OllamaShape>(api, model.alias);
  if (api == Api::Chat) {
    g.prompt_field = "messages";
    const json* messages = f.find("messages");
    if (!messages || (messages->is_array() && messages->empty())) {
      g.immediate = shape->loaded();
    } else {
      g.request.prompt = render_chat_prompt(model, parse_chat_messages(*messages, "messages", false), "messages");
    }
  } else {
    g.prompt_field = "prompt";
    const std::string prompt = f.string("prompt").value_or("");
    const std::string system = f.string("system").value_or("");
    if (prompt.empty()) {
      g.immediate = shape->loaded();
    } else if (f.boolean("raw").value_or(false)) {
      g.request.prompt = text_prompt(model.tokenizer, prompt);
    } else {
      std::vector<ChatMessage> messages;
      if (!system.empty()) messages.push_back({"system", system});
      messages.push_back({"user", prompt});
      g.request.prompt = render_chat_prompt(model, messages, "prompt");
    }
  }
  g.request.options = options.generation;
  if (!g.immediate) apply_limits(options, model, g.prompt_field, g.request);
  g.shape = std::move(shape);
  return g;
}

json model_entry(const ModelCard& card) {
  return {{"name", card.alias},
          {"model", card.alias},
          {"modified_at", rfc3339_utc(card.modified_unix)},
          {"size", card.size_bytes},
          {"digest", card.digest},
          {"details", ollama_details(card)}};
}

}  // namespace

Generation prepare_ollama_chat(const json& body, const ModelContext& model) { return prepare(body, model, Api::Chat); }

Generation prepare_ollama_generate(const json& body, const ModelContext& model) {
  return prepare(body, model, Api::Generate);
}

json ollama_tags(const ModelCard& card) { return {{"models", json::array({model_entry(card)})}}; }

json ollama_show(const ModelCard& card) {
  return {{"modelfile", ""},
          {"parameters", ""},
          {"template", card.chat_template},
          {"details", ollama_details(card)},
          {"model_info",
           {{"general.architecture", card.family},
            {"general.parameter_count", card.parameter_count},
            {card.family + ".context_length", card.training_context}}},
          {"capabilities", json::array({"completion"})},
          {"modified_at", rfc3339_utc(card.modified_unix)}};
}

json ollama_ps(const ModelCard& card, bool on_gpu) {
  json entry = model_entry(card);
  entry.erase("modified_at");
  entry["expires_at"] = "9999-12-31T23:59:59Z";  // loaded for the server's lifetime
  entry["size_vram"] = on_gpu ? card.size_bytes : 0;
  entry["context_length"] = card.context_length;
  return {{"models", json::array({entry})}};
}

json ollama_version() { return {{"version", kOllamaApiVersion}, {"realizar", REALIZAR_VERSION}}; }

}  // namespace realizar::server
