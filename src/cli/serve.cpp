// apr serve MODEL [--host H] [--port P] [--device D] [--parallel N] [--ctx N] [--kv-memory SIZE]
//                 [--max-batch-tokens N] [--max-queue N] [--api-key KEY] [--alias NAME] ...
// An OpenAI- and Ollama-compatible HTTP server on the serving engine (src/server, docs/server.md).
#include <memory>
#include <optional>
#include <string>

#include "cli/command.h"
#include "cli/options.h"
#include "cli/prompt.h"
#include "realizar/hub.h"
#include "realizar/engine.h"
#include "server/serve.h"
#include "util/byte_size.h"

namespace realizar::cli {
namespace {

struct ServeArgs {
  server::ServeConfig config;
  DeviceArgs device;
  int64_t context = 0;
  std::string kv_memory;
  std::string max_body = "8MiB";
  int max_queue = 64;
  int http_threads = 0;
  bool no_prefix_cache = false;
};

int run_serve(ServeArgs& args) {
  server::ServeConfig& c = args.config;
  c.model = hub::resolve_model(c.model.string());
  const int parallel = c.engine.max_sequences, max_batch_tokens = static_cast<int>(c.engine.max_batch_tokens);
  c.engine = engine_options(args.device, args.context);
  c.engine.max_sequences = parallel;
  c.engine.max_batch_tokens = max_batch_tokens;
  if (!args.kv_memory.empty()) c.engine.kv_cache_bytes = parse_byte_size(args.kv_memory);
  c.engine.max_waiting = args.max_queue;
  c.engine.prefix_caching = !args.no_prefix_cache;
  c.server.max_body_bytes = parse_byte_size(args.max_body);
  // Every request running or queued holds a connection thread while it waits; a few more answer
  // /health and /metrics while all of them are busy.
  c.server.http_threads = args.http_threads > 0 ? args.http_threads : c.engine.max_sequences + args.max_queue + 8;
  return server::serve(c);
}

const bool registered = register_command({
    "serve", "serve a model over HTTP with OpenAI's and Ollama's APIs",
    [](CLI::App& app) -> CommandRunner {
      auto args = std::make_shared<ServeArgs>();
      server::ServeConfig& c = args->config;
      c.engine.max_sequences = 4;
      app.add_option("model", c.model, kModelHelp)->required();
      app.add_option("--host", c.server.host, "address to listen on (default: 127.0.0.1; 0.0.0.0: every interface)");
      app.add_option("--port", c.server.port, "port to listen on (default: 8080; 0: any free port, printed)")
          ->check(CLI::Range(0, 65535));
      add_device_options(app, args->device);
      app.add_option("--parallel", c.engine.max_sequences, "sequences computed at once")
          ->check(kPositive)->capture_default_str();
      add_context_option(app, args->context);
      app.add_option("--kv-memory", args->kv_memory,
                     "KV cache size over all sequences, e.g. 4GiB, 512MiB (default: --ctx x --parallel tokens)");
      app.add_option("--max-batch-tokens", c.engine.max_batch_tokens,
                     "tokens computed per step, decode rows and prompt chunks")
          ->check(kPositive)->capture_default_str();
      app.add_option("--max-queue", args->max_queue,
                     "requests waiting for a sequence before more get 503 (default: 64)")
          ->check(kPositive);
      app.add_option("--api-key", c.server.api_key,
                     "require this key (Authorization: Bearer KEY) on every path but /health")
          ->envname("REALIZAR_API_KEY");
      app.add_option("--alias", c.server.alias, "model name clients see (default: the file name without .gguf)");
      add_chat_template_option(app, c.server.chat_template);
      app.add_option("--max-body", args->max_body, "largest request body; larger ones get 413 (default: 8MiB)");
      app.add_option("--grace", c.grace_seconds,
                     "seconds running requests may finish after SIGINT/SIGTERM (default: 10)")
          ->check(kNonNegative);
      app.add_option("--timeout", c.server.timeout_seconds,
                     "seconds a connection may stall on a read or write (default: 60)")
          ->check(kPositive);
      app.add_option("--http-threads", args->http_threads,
                     "connections served at once (default: --parallel + --max-queue + 8)")
          ->check(kPositive);
      app.add_flag("--no-prefix-cache", args->no_prefix_cache, "do not reuse the KV cache of shared prompt prefixes");
      return [args] { return run_serve(*args); };
    }});

}  // namespace
}  // namespace realizar::cli
