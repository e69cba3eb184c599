// The HTTP front of the serving engine (issue 12): OpenAI's and Ollama's APIs on cpp-httplib,
// HTTP in, Engine::submit and its events out. Each connection is served by one thread of a pool;
// a generating handler waits on its request's events in short slices so that a client that went
// away is noticed and its request cancelled, and a slow client only delays its own request (the
// engine queues events per request).
//
// Routes (docs/server.md has the details):
//   GET  /health /v1/health                 200 {"status":"ok"}; 503 "loading" / "shutting down"
//   GET  /v1/models /models                 OpenAI's model list
//   POST /v1/chat/completions /chat/completions, /v1/completions /completions
//   POST /tokenize /detokenize              llama-server's
//   GET  /metrics                           Prometheus text
//   POST /api/chat /api/generate /api/show, GET /api/tags /api/ps /api/version, GET /  (Ollama)
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "realizar/engine.h"
#include "server/model_card.h"

namespace realizar::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                      // 0: any free port (bind() says which)
  std::string api_key;                  // empty: no key asked for
  std::string alias;                    // the model's name for clients; empty: the file name
  std::optional<std::string> chat_template;  // overrides the model's (a chat_template_names() name)
  int64_t max_body_bytes = 8 << 20;     // larger request bodies get 413
  int http_threads = 16;                // connections served at once
  int timeout_seconds = 60;             // a read or write on a connection waits at most this long
};

class HttpServer {
 public:
  explicit HttpServer(ServerOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds the listening socket; returns the port. Throws realizar::Error when it cannot.
  int bind();
  // Serves connections until stop(); run it on its own thread.
  void listen();
  // From now on requests reach the engine (until then they get 503 "loading").
  void set_engine(std::unique_ptr<Engine> engine, ModelCard card);
  // Stops admitting generation requests (503 shutting_down, /health 503); running ones go on.
  void begin_drain();
  // Generation requests being answered (streams included).
  int64_t requests_in_flight() const;
  // Ends every generation in flight: each answers 503 shutting_down (or, streaming, an error event).
  void cancel_all();
  // Closes the listener; listen() returns once the open connections are done.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace realizar::server
