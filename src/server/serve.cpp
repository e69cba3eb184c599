#include "server/serve.h"

#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>
#include <thread>

#include "realizar/chat_template.h"
#include "realizar/error.h"
#include "util/counted.h"

namespace realizar::server {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kTick = std::chrono::milliseconds(100);
// After the listener closes, connections still open (an idle keep-alive one waits up to its
// 5-second timeout) get this long before the process exits without them.
constexpr auto kCloseWait = std::chrono::seconds(7);
constexpr auto kCancelWait = std::chrono::seconds(5);  // for cancelled requests to answer

// SIGINT and SIGTERM are blocked in every thread (threads inherit the mask of the one that starts
// them) and taken synchronously by the main thread with sigtimedwait: no handler runs in a
// random thread.
sigset_t shutdown_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

// The signal that came within `wait`, or 0.
int wait_for_signal(const sigset_t& set, std::chrono::milliseconds wait) {
  const timespec timeout{0, static_cast<long>(std::chrono::nanoseconds(wait).count())};
  const int signal = sigtimedwait(&set, nullptr, &timeout);
  return signal > 0 ? signal : 0;
}

void say(const std::string& line) {
  std::fputs(("apr: " + line + "\n").c_str(), stderr);
  std::fflush(stderr);
}

void describe_ready(const Engine& engine, const ModelCard& card, const ServeConfig& config) {
  const EngineMetrics m = engine.metrics();
  say(fmt::format("ready: {} ({}, {} {}) on {}, {} parallel sequences, context {} tokens, KV cache {} tokens "
                  "({} blocks of {})",
                  card.alias, card.family, card.parameter_size, card.quantization_level, engine.device_label(),
                  config.engine.max_sequences, engine.context_length(), engine.kv_cache_tokens(), m.kv_blocks_total,
                  m.kv_block_size));
  const auto& spec_template = engine.tokenizer().spec().chat_template;
  if (config.server.chat_template) {
    say(fmt::format("chat template: {} (--chat-template)", *config.server.chat_template));
  } else if (const auto name = detect_chat_template(spec_template.value_or(""))) {
    say(fmt::format("chat template: {}", *name));
  } else {
    say("warning: the model's chat template is not recognised (or absent); chat requests use ChatML");
  }
}

// Lets requests finish until none is left, the grace period ends or a second signal comes; then
// cancels the rest and waits for them to answer.
void drain(HttpServer& server, const sigset_t& signals, double grace_seconds) {
  server.begin_drain();
  say(fmt::format("shutting down: requests running: {}; {:.0f} s to finish them (signal again to cancel them now)",
                  server.requests_in_flight(), grace_seconds));
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(grace_seconds));
  while (server.requests_in_flight() > 0 && Clock::now() < deadline) {
    if (wait_for_signal(signals, kTick) != 0) break;
  }
  if (server.requests_in_flight() == 0) return;
  say(fmt::format("cancelling the requests still running: {}", server.requests_in_flight()));
  server.cancel_all();
  // Each answers within a poll of its handler, unless a write to its client blocks (up to
  // --timeout); stop() and the close wait bound those.
  const auto cancelled_by = Clock::now() + kCancelWait;
  while (server.requests_in_flight() > 0 && Clock::now() < cancelled_by) std::this_thread::sleep_for(kTick / 10);
}

}  // namespace

int serve(const ServeConfig& config) {
  const sigset_t signals = shutdown_signals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a client gone mid-write is an error return, not a dead process

  HttpServer server(config.server);
  const int port = server.bind();
  say(fmt::format("listening on http://{}:{} ({}); loading {}", config.server.host, port,
                  counted(config.server.http_threads, "HTTP thread"), config.model.string()));
  std::promise<void> listener_done;
  std::future<void> listener_closed = listener_done.get_future();
  std::thread listener([&] {
    server.listen();
    listener_done.set_value();
  });
  std::future<std::unique_ptr<Engine>> loading =
      std::async(std::launch::async, [&] { return std::make_unique<Engine>(config.model, config.engine); });

  int exit_code = 0;
  while (true) {
    const int signal = wait_for_signal(signals, kTick);
    if (loading.valid() && loading.wait_for(std::chrono::seconds(0)) == std::future_status::ready) {
      try {
        std::unique_ptr<Engine> engine = loading.get();
        ModelCard card = describe_model(*engine, config.model, config.server.alias);
        describe_ready(*engine, card, config);
        server.set_engine(std::move(engine), std::move(card));
      } catch (const std::exception& e) {
        say(fmt::format("error: cannot load {}: {}", config.model.string(), e.what()));
        exit_code = 1;
        break;
      }
    }
    if (signal == 0) continue;
    if (loading.valid()) {
      // Nothing runs yet and a load cannot be interrupted: leave without waiting for it.
      say(fmt::format("{} while loading the model; exiting", strsignal(signal)));
      std::_Exit(0);
    }
    drain(server, signals, config.grace_seconds);
    break;
  }
  server.stop();
  if (listener_closed.wait_for(kCloseWait) != std::future_status::ready) {
    say("connections still open after the listener closed; exiting without them");
    std::_Exit(exit_code);
  }
  listener.join();
  say("stopped");
  return exit_code;
}

}  // namespace realizar::server
