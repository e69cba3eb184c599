#include "server/http_server.h"

#include <httplib.h>
#include <openssl/crypto.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <map>
#include <mutex>

#include "realizar/error.h"
#include "server/api_error.h"
#include "server/connection.h"
#include "server/generation.h"
#include "server/json_fields.h"
#include "server/ollama_api.h"
#include "server/openai_api.h"
#include "server/prometheus.h"
#include "util/sha256.h"

namespace realizar::server {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

// How long a waiting handler sleeps between looks at its client and the shutdown flag.
constexpr auto kPollInterval = std::chrono::milliseconds(50);
constexpr size_t kKeepAliveRequests = 100;
constexpr time_t kKeepAliveSeconds = 5;
// A chunked body past --max-body is read on and dropped (so the connection stays in step and the
// client gets its 413) up to this many bytes, then the connection is given up.
constexpr size_t kMaxDiscardedBody = size_t{1} << 30;
constexpr size_t kLoggedPathLength = 200;

enum class Flavor { OpenAi, Ollama };

Flavor flavor_of(const std::string& path) { return path.rfind("/api/", 0) == 0 ? Flavor::Ollama : Flavor::OpenAi; }

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(to_wire(body), "application/json");
}

void send_error(httplib::Response& res, const ApiError& error, Flavor flavor) {
  if (error.retry_after) res.set_header("Retry-After", std::to_string(*error.retry_after));
  if (error.status == 401) res.set_header("WWW-Authenticate", "Bearer");
  send_json(res, error.status, flavor == Flavor::Ollama ? ollama_error_body(error) : openai_error_body(error));
}

ApiError internal_error(const std::string& what) {
  return ApiError(500, "server_error", fmt::format("internal error: {}", what));
}

// The error type OpenAI's clients expect for a status cpp-httplib answered by itself.
ApiError error_for_status(int status, const httplib::Request& req) {
  switch (status) {
    case 404: return ApiError(404, "not_found_error", fmt::format("no route for {} {}", req.method, req.path), {}, "not_found");
    case 413: return ApiError(413, "invalid_request_error", "the request body is too large", {}, "request_too_large");
    case 414: return ApiError(414, "invalid_request_error", "the request URI is too long");
    default:
      if (status >= 500) return ApiError(status, "server_error", "internal error");
      return ApiError(status, "invalid_request_error", fmt::format("bad request (HTTP {})", status));
  }
}

// Method and path as they may appear in a log line: printable ASCII, the rest as \xNN, cut short.
std::string loggable(std::string_view text) {
  std::string out;
  for (const char c : text.substr(0, kLoggedPathLength)) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f && c != '"' && c != '\\') {
      out += c;
    } else {
      out += fmt::format("\\x{:02x}", u);
    }
  }
  if (text.size() > kLoggedPathLength) out += "...";
  return out;
}

// What the log line of the request being handled on this thread says. cpp-httplib runs the
// handler, a streamed response's content provider and the logger on the connection's thread, in
// that order, so they share it without locks.
struct RequestRecord {
  Clock::time_point start = Clock::now();
  std::string id;
  bool generated = false;  // a generation request reached the engine
  RequestStats stats;
  std::string outcome;     // stop, length, cancelled, error, client gone
};
thread_local RequestRecord t_record;

Endpoints endpoints_of(const httplib::Request& req) {
  return Endpoints{req.local_addr, req.local_port, req.remote_addr, req.remote_port};
}

// The API key, compared in constant time: both sides are hashed first, so neither the time nor
// the length of the comparison depends on how much of a guess is right.
class ApiKey {
 public:
  explicit ApiKey(const std::string& key) : digest_(key.empty() ? "" : sha256_hex(as_bytes(key))) {}
  bool required() const { return !digest_.empty(); }
  bool matches(const std::string& given) const {
    const std::string digest = sha256_hex(as_bytes(given));
    return CRYPTO_memcmp(digest.data(), digest_.data(), digest_.size()) == 0;
  }

 private:
  static std::span<const uint8_t> as_bytes(const std::string& s) {
    return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
  }
  std::string digest_;
};

// The key a request presents: "Authorization: Bearer KEY" (OpenAI's clients) or "X-Api-Key: KEY".
std::optional<std::string> presented_key(const httplib::Request& req) {
  const std::string authorization = req.get_header_value("Authorization");
  constexpr std::string_view kBearer = "bearer ";
  if (authorization.size() > kBearer.size() &&
      std::equal(kBearer.begin(), kBearer.end(), authorization.begin(),
                 [](char a, char b) { return a == std::tolower(static_cast<unsigned char>(b)); })) {
    return authorization.substr(kBearer.size());
  }
  if (req.has_header("X-Api-Key")) return req.get_header_value("X-Api-Key");
  return std::nullopt;
}

}  // namespace

struct HttpServer::Impl {
  explicit Impl(ServerOptions o) : options(std::move(o)), api_key(options.api_key) {}

  ServerOptions options;
  ApiKey api_key;
  httplib::Server http;

  // Set once by set_engine; read by every handler after `ready` says so.
  std::unique_ptr<Engine> engine;
  ModelCard card;
  std::atomic<bool> ready{false};
  std::atomic<bool> draining{false};
  std::atomic<bool> cancelling{false};
  std::atomic<int64_t> in_flight{0};

  std::mutex responses_mutex;
  std::map<int, int64_t> responses;  // by status, for /metrics

  // Counts a generation request in flight for as long as it lives (a stream's lives in its
  // content provider, past the handler).
  class Lease {
   public:
    explicit Lease(Impl& impl) : impl_(&impl) { ++impl.in_flight; }
    Lease(Lease&& other) noexcept : impl_(std::exchange(other.impl_, nullptr)) {}
    Lease(const Lease&) = delete;
    ~Lease() {
      if (impl_) --impl_->in_flight;
    }

   private:
    Impl* impl_;
  };

  struct Stream {
    Lease lease;
    RequestStream request;
    std::unique_ptr<ResponseShape> shape;
    bool cancel_sent = false;
  };

  void routes();
  Engine& ready_engine() const;
  ModelContext model_context() const {
    return ModelContext{engine->tokenizer(), engine->context_length(), card.alias, options.chat_template};
  }
  std::string read_body(const httplib::ContentReader& reader, const httplib::Response& res) const;

  using Handler = std::function<void(const httplib::Request&, httplib::Response&)>;
  using BodyHandler = std::function<void(const httplib::Request&, httplib::Response&, const std::string& body)>;
  void get(const std::string& path, Handler handler);
  void post(const std::string& path, BodyHandler handler);
  static void guarded(const httplib::Request& req, httplib::Response& res, const Handler& handler);

  using Prepare = Generation (*)(const json&, const ModelContext&);
  void generate(const httplib::Request& req, httplib::Response& res, const std::string& body, Prepare prepare);
  void answer_whole(const httplib::Request& req, httplib::Response& res, RequestStream& stream, ResponseShape& shape);
  void answer_stream(httplib::Response& res, Stream stream);
  bool pump(Stream& stream, httplib::DataSink& sink);
  void cancel_if_asked(Stream& stream);
  void health(httplib::Response& res) const;
  httplib::Server::HandlerResponse authorize(const httplib::Request& req, httplib::Response& res) const;
  void log(const httplib::Request& req, const httplib::Response& res);
};

Engine& HttpServer::Impl::ready_engine() const {
  if (draining) throw unavailable("the server is shutting down", "shutting_down");
  if (!ready) throw unavailable("the model is loading", "loading");
  return *engine;
}

std::string HttpServer::Impl::read_body(const httplib::ContentReader& reader, const httplib::Response& res) const {
  const size_t limit = static_cast<size_t>(options.max_body_bytes);
  std::string body;
  bool over = false;
  size_t discarded = 0;
  const bool complete = reader([&](const char* data, size_t length) {
    if (!over && body.size() + length <= limit) {
      body.append(data, length);
      return true;
    }
    over = true;
    discarded += body.size() + length;
    body.clear();
    return discarded <= kMaxDiscardedBody;
  });
  if (over || res.status == 413) {
    throw ApiError(413, "invalid_request_error",
                   fmt::format("the request body is larger than {} bytes (the server's --max-body)", limit), {},
                   "request_too_large");
  }
  if (!complete) throw bad_request("the request body could not be read (cut short, or malformed chunks)");
  return body;
}

void HttpServer::Impl::guarded(const httplib::Request& req, httplib::Response& res, const Handler& handler) {
  const Flavor flavor = flavor_of(req.path);
  try {
    handler(req, res);
  } catch (const ApiError& e) {
    send_error(res, e, flavor);
  } catch (const std::exception& e) {
    send_error(res, internal_error(e.what()), flavor);
  }
}

void HttpServer::Impl::get(const std::string& path, Handler handler) {
  http.Get(path, [handler = std::move(handler)](const httplib::Request& req, httplib::Response& res) {
    guarded(req, res, handler);
  });
}

// POST handlers read their body themselves, so the size limit holds for chunked bodies too
// (cpp-httplib 0.11 checks it only against Content-Length).
void HttpServer::Impl::post(const std::string& path, BodyHandler handler) {
  http.Post(path, [this, handler = std::move(handler)](const httplib::Request& req, httplib::Response& res,
                                                        const httplib::ContentReader& reader) {
    guarded(req, res, [&](const httplib::Request& q, httplib::Response& r) { handler(q, r, read_body(reader, r)); });
  });
}

void HttpServer::Impl::health(httplib::Response& res) const {
  if (draining) return send_json(res, 503, {{"status", "shutting down"}});
  if (!ready) return send_json(res, 503, {{"status", "loading"}});
  send_json(res, 200, {{"status", "ok"}});
}

void HttpServer::Impl::routes() {
  get("/health", [this](const httplib::Request&, httplib::Response& res) { health(res); });
  get("/v1/health", [this](const httplib::Request&, httplib::Response& res) { health(res); });
  const auto models = [this](const httplib::Request&, httplib::Response& res) {
    ready_engine();
    send_json(res, 200, models_list(card));
  };
  get("/v1/models", models);
  get("/models", models);
  get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    const EngineMetrics metrics = ready_engine().metrics();
    std::map<int, int64_t> responses_copy;
    {
      std::lock_guard lock(responses_mutex);
      responses_copy = responses;
    }
    res.status = 200;
    res.set_content(prometheus_text(metrics, card.alias, responses_copy), "text/plain; version=0.0.4; charset=utf-8");
  });
  for (const char* path : {"/v1/chat/completions", "/chat/completions"}) {
    post(path, [this](const httplib::Request& req, httplib::Response& res, const std::string& body) {
      generate(req, res, body, prepare_chat_completion);
    });
  }
  for (const char* path : {"/v1/completions", "/completions"}) {
    post(path, [this](const httplib::Request& req, httplib::Response& res, const std::string& body) {
      generate(req, res, body, prepare_completion);
    });
  }
  post("/tokenize", [this](const httplib::Request&, httplib::Response& res, const std::string& body) {
    send_json(res, 200, tokenize(parse_json_object(body), ready_engine().tokenizer()));
  });
  post("/detokenize", [this](const httplib::Request&, httplib::Response& res, const std::string& body) {
    send_json(res, 200, detokenize(parse_json_object(body), ready_engine().tokenizer()));
  });
  post("/api/chat", [this](const httplib::Request& req, httplib::Response& res, const std::string& body) {
    generate(req, res, body, prepare_ollama_chat);
  });
  post("/api/generate", [this](const httplib::Request& req, httplib::Response& res, const std::string& body) {
    generate(req, res, body, prepare_ollama_generate);
  });
  post("/api/show", [this](const httplib::Request&, httplib::Response& res, const std::string& body) {
    parse_json_object(body);
    ready_engine();
    send_json(res, 200, ollama_show(card));
  });
  get("/api/tags", [this](const httplib::Request&, httplib::Response& res) {
    ready_engine();
    send_json(res, 200, ollama_tags(card));
  });
  get("/api/ps", [this](const httplib::Request&, httplib::Response& res) {
    ready_engine();
    send_json(res, 200, ollama_ps(card, engine->device_name() == "cuda"));
  });
  get("/api/version", [](const httplib::Request&, httplib::Response& res) { send_json(res, 200, ollama_version()); });
  // Ollama's clients and front ends probe the root to see whether a server is there.
  get("/", [](const httplib::Request&, httplib::Response& res) {
    res.status = 200;
    res.set_content("realizar is running (OpenAI API under /v1, Ollama API under /api)\n", "text/plain");
  });
}

void HttpServer::Impl::generate(const httplib::Request& req, httplib::Response& res, const std::string& body,
                                Prepare prepare) {
  Engine& engine_ref = ready_engine();
  Lease lease(*this);
  Generation g = prepare(parse_json_object(body), model_context());
  t_record.id = g.shape->id();
  if (g.immediate) return send_json(res, 200, *g.immediate);
  RequestStream stream = [&] {
    try {
      return engine_ref.submit(std::move(g.request));
    } catch (const RequestError& e) {
      throw from_request_error(e, g.prompt_field);
    }
  }();
  t_record.generated = true;
  if (!g.stream) return answer_whole(req, res, stream, *g.shape);
  answer_stream(res, Stream{std::move(lease), std::move(stream), std::move(g.shape)});
}

void HttpServer::Impl::answer_whole(const httplib::Request& req, httplib::Response& res, RequestStream& stream,
                                    ResponseShape& shape) {
  const ConnectionProbe probe(endpoints_of(req));
  Outcome outcome;
  bool cancel_sent = false;
  while (outcome.finish == FinishReason::None) {
    if (cancelling && !cancel_sent) {
      engine->cancel(stream.id());
      cancel_sent = true;
    }
    if (probe.client_gone()) {
      engine->cancel(stream.id());
      t_record.outcome = "client gone";
      res.status = 499;  // nginx's "client closed request": nobody reads it, the log shows it
      return;
    }
    if (std::optional<RequestEvent> event = stream.next(kPollInterval)) outcome.add(*event);
  }
  t_record.stats = outcome.stats;
  t_record.outcome = finish_reason_name(outcome.finish);
  if (outcome.finish == FinishReason::Error) {
    throw ApiError(500, "server_error", fmt::format("generation failed: {}", outcome.error));
  }
  if (outcome.finish == FinishReason::Cancelled) throw unavailable("the server is shutting down", "shutting_down");
  send_json(res, 200, shape.body(outcome));
}

void HttpServer::Impl::answer_stream(httplib::Response& res, Stream stream) {
  auto shared = std::make_shared<Stream>(std::move(stream));
  res.status = 200;
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      shared->shape->stream_content_type(),
      [this, shared](size_t, httplib::DataSink& sink) { return pump(*shared, sink); });
}

void HttpServer::Impl::cancel_if_asked(Stream& stream) {
  if (cancelling && !stream.cancel_sent) {
    engine->cancel(stream.request.id());
    stream.cancel_sent = true;
  }
}

// cpp-httplib calls this until it returns false (the connection is given up) or the sink is
// done; each call sends the next event that has something to send.
bool HttpServer::Impl::pump(Stream& stream, httplib::DataSink& sink) {
  const auto client_gone = [&] {
    engine->cancel(stream.request.id());
    t_record.outcome = "client gone";
    return false;
  };
  while (true) {
    if (!sink.is_writable()) return client_gone();
    cancel_if_asked(stream);
    std::optional<RequestEvent> event = stream.request.next(kPollInterval);
    if (!event) continue;
    std::string bytes;
    const FinishReason finish = event->finish;
    if (finish == FinishReason::Error || finish == FinishReason::Cancelled) {
      const ApiError error = finish == FinishReason::Error
                                 ? ApiError(500, "server_error", fmt::format("generation failed: {}", event->error))
                                 : unavailable("the server is shutting down", "shutting_down");
      RequestEvent partial = *event;
      partial.finish = FinishReason::None;
      bytes = stream.shape->stream_event(partial) + stream.shape->stream_error(error);
    } else {
      bytes = stream.shape->stream_event(*event);
    }
    if (finish != FinishReason::None) {
      t_record.stats = event->stats;
      t_record.outcome = finish_reason_name(finish);
    }
    // An empty write would end the chunked body early: nothing is written without bytes.
    if (!bytes.empty() && !sink.write(bytes.data(), bytes.size())) return client_gone();
    if (finish != FinishReason::None) {
      sink.done();
      return true;
    }
    if (!bytes.empty()) return true;
  }
}

httplib::Server::HandlerResponse HttpServer::Impl::authorize(const httplib::Request& req, httplib::Response& res) const {
  if (!api_key.required() || req.path == "/health" || req.path == "/v1/health") {
    return httplib::Server::HandlerResponse::Unhandled;
  }
  const std::optional<std::string> key = presented_key(req);
  if (key && api_key.matches(*key)) return httplib::Server::HandlerResponse::Unhandled;
  send_error(res,
             ApiError(401, "authentication_error", key ? "invalid API key" : "an API key is required (Authorization: Bearer KEY)",
                      {}, "invalid_api_key"),
             flavor_of(req.path));
  return httplib::Server::HandlerResponse::Handled;
}

void HttpServer::Impl::log(const httplib::Request& req, const httplib::Response& res) {
  {
    std::lock_guard lock(responses_mutex);
    ++responses[res.status];
  }
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t_record.start).count();
  std::string line = fmt::format("apr: {}:{} \"{} {}\" {} {}", loggable(req.remote_addr), req.remote_port,
                                 loggable(req.method), loggable(req.path), res.status,
                                 t_record.id.empty() ? "-" : t_record.id);
  if (t_record.generated) {
    const RequestStats& s = t_record.stats;
    const double decode_rate = s.decode_seconds > 0 ? (s.generated_tokens - 1) / s.decode_seconds : 0.0;
    line += fmt::format(" prompt {} (cached {}) generated {} TTFT {:.1f} ms {:.1f} tok/s", s.prompt_tokens,
                        s.cached_tokens, s.generated_tokens, s.ttft_seconds * 1e3, decode_rate);
  }
  if (!t_record.outcome.empty()) line += " " + t_record.outcome;
  line += fmt::format(" {:.1f} ms\n", ms);
  std::fputs(line.c_str(), stderr);
  t_record = RequestRecord{};
}

HttpServer::HttpServer(ServerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {
  Impl& i = *impl_;
  const size_t threads = static_cast<size_t>(std::max(i.options.http_threads, 2));
  i.http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  i.http.set_payload_max_length(static_cast<size_t>(i.options.max_body_bytes));
  i.http.set_read_timeout(i.options.timeout_seconds, 0);
  i.http.set_write_timeout(i.options.timeout_seconds, 0);
  i.http.set_keep_alive_max_count(kKeepAliveRequests);
  i.http.set_keep_alive_timeout(kKeepAliveSeconds);
  i.http.set_tcp_nodelay(true);  // each streamed chunk leaves at once (no Nagle delay)
  i.http.set_pre_routing_handler([&i](const httplib::Request& req, httplib::Response& res) {
    t_record = RequestRecord{};
    return i.authorize(req, res);
  });
  i.http.set_error_handler(httplib::Server::HandlerWithResponse(
      [](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty() || res.content_provider_) return httplib::Server::HandlerResponse::Unhandled;
        send_error(res, error_for_status(res.status, req), flavor_of(req.path));
        return httplib::Server::HandlerResponse::Handled;
      }));
  i.http.set_exception_handler([](const httplib::Request& req, httplib::Response& res, std::exception_ptr error) {
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_error(res, internal_error(what), flavor_of(req.path));
  });
  i.http.set_logger([&i](const httplib::Request& req, const httplib::Response& res) { i.log(req, res); });
  i.routes();
}

HttpServer::~HttpServer() = default;

int HttpServer::bind() {
  const int port = impl_->options.port == 0 ? impl_->http.bind_to_any_port(impl_->options.host)
                                            : (impl_->http.bind_to_port(impl_->options.host, impl_->options.port)
                                                   ? impl_->options.port
                                                   : -1);
  if (port < 0) {
    fail("cannot listen on {}:{} (is the address in use, or not this machine's?)", impl_->options.host,
         impl_->options.port);
  }
  return port;
}

void HttpServer::listen() { impl_->http.listen_after_bind(); }

void HttpServer::set_engine(std::unique_ptr<Engine> engine, ModelCard card) {
  impl_->engine = std::move(engine);
  impl_->card = std::move(card);
  impl_->ready = true;
}

void HttpServer::begin_drain() {
  impl_->draining = true;
  if (impl_->ready) impl_->engine->stop_accepting();
}

int64_t HttpServer::requests_in_flight() const { return impl_->in_flight.load(); }

void HttpServer::cancel_all() { impl_->cancelling = true; }

void HttpServer::stop() { impl_->http.stop(); }

}  // namespace realizar::server
