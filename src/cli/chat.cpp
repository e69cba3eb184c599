// apr chat MODEL [--system S] [-n N] [sampling options] [--chat-template NAME] [--device D] [--ctx N]
//            [-t N] [--verbose]
//
// A multi-turn chat on the serving engine (chat/chat_session.h: the model's chat template, prefix
// caching, the oldest turns dropped when the context is full). On a terminal: readline editing and
// history, /commands, Ctrl-C stops an answer, a second Ctrl-C in a row or Ctrl-D leaves. From a
// pipe: one message (or command) per line and one answer per message on its own line (standard
// output holds only answers and what /stats, /help and /system print), so it can be scripted.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "chat/chat_session.h"
#include "cli/command.h"
#include "cli/line_reader.h"
#include "cli/options.h"
#include "cli/prompt.h"
#include "realizar/engine.h"
#include "realizar/error.h"
#include "realizar/hub.h"
#include "util/paths.h"

namespace realizar::cli {
namespace {

// -n 0: answers of up to a quarter of the context, at most 512 tokens, so that a few turns fit.
constexpr int kMaxDefaultMaxTokens = 512;

struct ChatCommandArgs {
  std::string model;
  std::string system;
  std::optional<std::string> template_name;
  GenerationOptions generation;
  SamplingArgs sampling;
  DeviceArgs device;
  int64_t context = 0;
  bool verbose = false;
};

void print_notice(const std::string& text) {
  std::fflush(stdout);  // what was printed before it comes first, also through pipes
  std::fprintf(stderr, "apr: %s\n", text.c_str());
}

// "1 message", "4 messages".
std::string counted(int64_t count, std::string_view noun) {
  return fmt::format("{} {}{}", count, noun, count == 1 ? "" : "s");
}

std::string trimmed(std::string_view text) {
  const size_t begin = text.find_first_not_of(" \t");
  if (begin == std::string_view::npos) return "";
  const size_t end = text.find_last_not_of(" \t");
  return std::string(text.substr(begin, end - begin + 1));
}

class ChatLoop {
 public:
  ChatLoop(ChatSession& session, LineReader& input, bool verbose)
      : session_(session), input_(input), verbose_(verbose) {}

  // Reads and handles lines until /exit, Ctrl-D, two Ctrl-C in a row or the end of the input.
  // Returns the exit code: 0, or 1 when a piped line failed (the chat went on after it).
  int run();

 private:
  struct Command {
    const char* name;      // "/save"
    const char* argument;  // shown in /help: "FILE", "[TEXT]" (optional), "" (none)
    const char* help;
    void (ChatLoop::*run)(const std::string& argument);
  };
  static const Command kCommands[];

  void handle_line(const std::string& line);
  void run_command(const std::string& line);
  void send(std::string message);

  void help(const std::string&);
  void clear(const std::string&);
  void system_message(const std::string& text);
  void save(const std::string& path);
  void load(const std::string& path);
  void stats(const std::string&);
  void leave(const std::string&) { leaving_ = true; }
  std::string message_count() const {
    return counted(static_cast<int64_t>(session_.conversation().messages().size()), "message");
  }

  ChatSession& session_;
  LineReader& input_;
  bool verbose_;
  bool leaving_ = false;
  bool failed_ = false;
  // Ctrl-C at an empty prompt, or stopping an answer, with nothing entered between: the second leaves.
  int interrupts_in_a_row_ = 0;
};

const ChatLoop::Command ChatLoop::kCommands[] = {
    {"/help", "", "this list", &ChatLoop::help},
    {"/clear", "", "forget the conversation (the system message stays)", &ChatLoop::clear},
    {"/system", "[TEXT]", "set the system message for the next answers (no TEXT: show it)", &ChatLoop::system_message},
    {"/save", "FILE", "write the conversation as JSON, OpenAI's messages", &ChatLoop::save},
    {"/load", "FILE", "replace the conversation with one from a JSON file", &ChatLoop::load},
    {"/stats", "", "the last answer's TTFT and speed, the prefix cache, the context used", &ChatLoop::stats},
    {"/exit", "", "leave (also Ctrl-D, or Ctrl-C twice in a row)", &ChatLoop::leave},
};

int ChatLoop::run() {
  while (!leaving_) {
    const InputLine line = input_.read();
    switch (line.kind) {
      case InputLine::Kind::End:
        if (input_.interactive()) std::fputc('\n', stdout);  // readline leaves the prompt's line open
        leaving_ = true;
        break;
      case InputLine::Kind::Interrupted:
        if (!line.text.empty()) {
          interrupts_in_a_row_ = 0;  // it only discarded what was typed
        } else if (++interrupts_in_a_row_ >= 2) {
          leaving_ = true;
        } else {
          print_notice("Ctrl-C again or Ctrl-D to leave");
        }
        break;
      case InputLine::Kind::Line:
        interrupts_in_a_row_ = 0;
        try {
          handle_line(line.text);
        } catch (const Error& e) {
          print_notice(fmt::format("error: {}", e.what()));
          failed_ = true;
        }
        break;
    }
  }
  std::fflush(stdout);
  return failed_ && !input_.interactive() ? 1 : 0;
}

void ChatLoop::handle_line(const std::string& line) {
  if (trimmed(line).empty()) return;
  if (line.starts_with("//")) return send(line.substr(1));  // a message that starts with "/"
  if (line.starts_with("/")) return run_command(line);
  send(line);
}

void ChatLoop::run_command(const std::string& line) {
  const size_t space = line.find_first_of(" \t");
  const std::string name = line.substr(0, space);
  const std::string argument = space == std::string::npos ? "" : trimmed(line.substr(space));
  for (const Command& command : kCommands) {
    if (name != command.name) continue;
    const std::string_view wanted = command.argument;
    if (wanted.empty() && !argument.empty()) fail("{} takes no argument", name);
    if (!wanted.empty() && !wanted.starts_with("[") && argument.empty()) fail("usage: {} {}", name, wanted);
    (this->*command.run)(argument);
    return;
  }
  fail("unknown command {} (/help lists them; start a message with // to send a leading /)", name);
}

void ChatLoop::send(std::string message) {
  take_interrupts();
  bool printed = false;
  TurnCallbacks callbacks;
  callbacks.on_notice = print_notice;
  callbacks.on_text = [&printed](std::string_view text) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
    printed = true;
  };
  if (verbose_) {
    callbacks.on_prompt = [](const ChatPrompt& prompt) {
      // Only shown: bytes that are not UTF-8 (typed ones) may be replaced here.
      const std::string text = nlohmann::json(prompt.text).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      print_notice(fmt::format("prompt ({} tokens, template {}): {}", prompt.tokens.size(), prompt.template_name, text));
    };
  }
  // Piped, SIGINT keeps its default (it ends apr); on a terminal it stops the answer.
  if (input_.interactive()) callbacks.stop_requested = [] { return pending_interrupts() > 0 || leave_requested(); };

  TurnResult turn;
  try {
    turn = session_.send(std::move(message), callbacks);
  } catch (const Error&) {
    if (printed) std::fputc('\n', stdout);  // the error's line follows the partial answer's
    throw;
  }
  std::fputs(input_.interactive() ? "\n\n" : "\n", stdout);
  if (leave_requested()) {
    leaving_ = true;
    return;
  }
  switch (turn.finish) {
    case FinishReason::Stop:
      break;
    case FinishReason::Length:
      print_notice(fmt::format("the answer stopped at --max-tokens ({} tokens)", turn.stats.generated_tokens));
      break;
    case FinishReason::Cancelled:
      if (take_interrupts() >= 2) {
        leaving_ = true;
        break;
      }
      interrupts_in_a_row_ = 1;
      print_notice(turn.answer.empty()
                       ? "stopped before the answer began (the message is not kept); Ctrl-C again or Ctrl-D to leave"
                       : "stopped (the answer so far stays in the chat); Ctrl-C again or Ctrl-D to leave");
      break;
    case FinishReason::None:
    case FinishReason::Error:
      fail("the answer ended without a finish reason ({})", finish_reason_name(turn.finish));
  }
}

void ChatLoop::help(const std::string&) {
  for (const Command& command : kCommands) {
    const std::string usage = *command.argument ? fmt::format("{} {}", command.name, command.argument) : command.name;
    std::printf("  %-16s %s\n", usage.c_str(), command.help);
  }
  std::printf("  %-16s %s\n", "//TEXT", "send /TEXT as a message");
  std::printf("Ctrl-C stops an answer; what came of it stays in the chat.\n");
}

void ChatLoop::clear(const std::string&) {
  session_.conversation().clear();
  print_notice("conversation cleared");
}

void ChatLoop::system_message(const std::string& text) {
  if (text.empty()) {
    const std::string& current = session_.conversation().system();
    std::printf("%s\n", current.empty() ? "(no system message)" : current.c_str());
    return;
  }
  session_.conversation().set_system(text);
  print_notice("system message set");
}

void ChatLoop::save(const std::string& path) {
  save_conversation(session_.conversation(), path);
  print_notice(fmt::format("saved {} to {}", message_count(), path));
}

void ChatLoop::load(const std::string& path) {
  session_.conversation() = load_conversation(path);
  print_notice(fmt::format("loaded {} from {}", message_count(), path));
}

void ChatLoop::stats(const std::string&) {
  if (const std::optional<TurnResult>& last = session_.last_turn()) {
    const RequestStats& s = last->stats;
    const double decode_rate = s.generated_tokens > 1 ? (s.generated_tokens - 1) / std::max(s.decode_seconds, 1e-9) : 0.0;
    const int64_t computed = s.prompt_tokens - s.cached_tokens;
    std::printf("last answer: %s, TTFT %.1f ms, %.2f tok/s, finished: %s\n",
                counted(s.generated_tokens, "token").c_str(), s.ttft_seconds * 1e3, decode_rate,
                finish_reason_name(last->finish));
    std::printf("last prompt: %lld tokens, %lld from the prefix cache, %lld computed (%.1f tok/s)\n",
                static_cast<long long>(s.prompt_tokens), static_cast<long long>(s.cached_tokens),
                static_cast<long long>(computed), computed / std::max(s.prompt_seconds, 1e-9));
  } else {
    std::printf("no answer yet\n");
  }
  std::printf("context: %lld of %lld tokens used, %s\n", static_cast<long long>(session_.context_used()),
              static_cast<long long>(session_.context_length()),
              message_count().c_str());
}

std::optional<std::filesystem::path> history_file() {
  try {
    return realizar_home() / "chat_history";
  } catch (const Error&) {
    return std::nullopt;  // no $HOME: the history lasts as long as the chat
  }
}

int run_chat(ChatCommandArgs& args) {
  const std::filesystem::path model = hub::resolve_model(args.model);
  Engine engine(model, engine_options(args.device, args.context));
  print_engine_line(engine, model.string());
  args.generation.sampling = sampling_params(args.sampling);
  if (args.generation.max_tokens == 0) {
    args.generation.max_tokens =
        static_cast<int>(std::clamp<int64_t>(engine.context_length() / 4, 1, kMaxDefaultMaxTokens));
  }
  ChatSession session(engine, ChatSettings{args.generation, args.template_name}, args.system);

  LineReader input("> ", history_file());
  if (input.interactive()) {
    catch_terminal_signals();
    print_notice("type a message; /help lists the commands, Ctrl-D leaves");
  }
  ChatLoop loop(session, input, args.verbose);
  return loop.run();
}

const bool registered = register_command({
    "chat", "talk with a model: a multi-turn chat in the terminal, or one answer per line from a pipe",
    [](CLI::App& app) -> CommandRunner {
      auto args = std::make_shared<ChatCommandArgs>();
      args->generation.max_tokens = 0;
      app.add_option("model", args->model, kModelHelp)->required();
      app.add_option("--system", args->system, "system message, first in the conversation");
      app.add_option("-n,--max-tokens", args->generation.max_tokens,
                     "most tokens per answer (0: a quarter of the context, at most 512)")
          ->check(kNonNegative)
          ->capture_default_str();
      add_sampling_options(app, args->sampling);
      add_chat_template_option(app, args->template_name);
      add_device_options(app, args->device);
      add_context_option(app, args->context);
      app.add_flag("--verbose", args->verbose, "print each rendered prompt (as a JSON string) on stderr");
      return [args] { return run_chat(*args); };
    }});

}  // namespace
}  // namespace realizar::cli
