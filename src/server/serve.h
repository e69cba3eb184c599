// `apr serve`'s life: bind, load the model behind a listening socket (/health says "loading"
// meanwhile), serve, and on SIGINT/SIGTERM shut down gracefully: stop admitting requests, let
// the running ones finish for a grace period (a second signal ends it early), cancel the rest,
// close the listener, exit 0.
#pragma once

#include <filesystem>

#include "realizar/engine.h"
#include "server/http_server.h"

namespace realizar::server {

struct ServeConfig {
  std::filesystem::path model;
  EngineOptions engine;
  ServerOptions server;
  double grace_seconds = 10;  // running requests may finish for this long after a signal
};

// Returns the process exit code: 0 after a signal, 1 when the model cannot be loaded. Throws
// realizar::Error when the socket cannot be bound. Prints what it listens on, then the device
// and the KV cache room once the model is loaded, then one line per request, on stderr.
int serve(const ServeConfig& config);

}  // namespace realizar::server
