#include "cli/line_reader.h"

#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <system_error>

// readline.h uses FILE without including stdio.h.
#include <readline/history.h>
#include <readline/readline.h>

#include "realizar/error.h"

namespace realizar::cli {
namespace {

constexpr int kHistoryLines = 1000;
constexpr int kPollMilliseconds = 100;  // the longest a SIGINT taken by another thread waits

// A signal handler may only touch lock-free atomics (or volatile sig_atomic_t).
std::atomic<int> g_interrupts{0};
static_assert(std::atomic<int>::is_always_lock_free);

std::atomic<bool> g_leave{false};
static_assert(std::atomic<bool>::is_always_lock_free);

extern "C" void count_interrupt(int) { g_interrupts.fetch_add(1, std::memory_order_relaxed); }
extern "C" void request_leave(int) { g_leave.store(true, std::memory_order_relaxed); }

void handle(int signal, void (*handler)(int)) {
  struct sigaction action {};
  action.sa_handler = handler;
  sigemptyset(&action.sa_mask);
  action.sa_flags = 0;  // no SA_RESTART: poll() returns at once with EINTR
  if (sigaction(signal, &action, nullptr) != 0) fail("cannot catch signal {}: {}", signal, std::strerror(errno));
}

// readline's callback interface hands a finished line to a plain function.
std::optional<InputLine> g_entered;

extern "C" void on_line(char* line) {
  if (line == nullptr) {
    g_entered = InputLine{InputLine::Kind::End, ""};
  } else {
    g_entered = InputLine{InputLine::Kind::Line, line};
    if (*line != '\0') add_history(line);
    std::free(line);
  }
  // Removed here, as readline's manual does: left installed, it would show the prompt again now.
  rl_callback_handler_remove();
}

}  // namespace

void catch_terminal_signals() {
  handle(SIGINT, count_interrupt);
  handle(SIGTERM, request_leave);
  handle(SIGHUP, request_leave);
}

bool leave_requested() { return g_leave.load(std::memory_order_relaxed); }

int pending_interrupts() { return g_interrupts.load(std::memory_order_relaxed); }

int take_interrupts() { return g_interrupts.exchange(0, std::memory_order_relaxed); }

LineReader::LineReader(std::string prompt, std::optional<std::filesystem::path> history_file)
    : interactive_(isatty(STDIN_FILENO) != 0), prompt_(std::move(prompt)), history_file_(std::move(history_file)) {
  if (!interactive_) return;
  rl_readline_name = "apr";  // for $if apr in ~/.inputrc
  // The prompt and the echo of what is typed stay out of a redirected standard output.
  rl_outstream = isatty(STDOUT_FILENO) ? stdout : stderr;
  rl_bind_key('\t', rl_insert);  // a chat message is not a file name: Tab types a tab
  using_history();
  stifle_history(kHistoryLines);
  if (history_file_) read_history(history_file_->c_str());  // none yet is fine
}

LineReader::~LineReader() {
  if (!interactive_ || !history_file_) return;
  std::error_code ignored;
  std::filesystem::create_directories(history_file_->parent_path(), ignored);
  if (const int error = write_history(history_file_->c_str()); error != 0) {
    std::fprintf(stderr, "apr: warning: cannot save the line history to %s: %s\n", history_file_->c_str(),
                 std::strerror(error));
  }
}

InputLine LineReader::read() {
  if (interactive_) return read_terminal();
  InputLine line;
  if (!std::getline(std::cin, line.text)) return InputLine{InputLine::Kind::End, ""};
  if (!line.text.empty() && line.text.back() == '\r') line.text.pop_back();
  line.kind = InputLine::Kind::Line;
  return line;
}

InputLine LineReader::read_terminal() {
  g_entered.reset();
  rl_callback_handler_install(prompt_.c_str(), on_line);
  while (!g_entered) {
    if (leave_requested()) {
      rl_callback_handler_remove();
      return InputLine{InputLine::Kind::End, ""};
    }
    if (take_interrupts() > 0) {
      const InputLine discarded{InputLine::Kind::Interrupted, std::string(rl_line_buffer, rl_end)};
      rl_echo_signal_char(SIGINT);  // "^C", as the shell shows it
      rl_free_line_state();
      rl_callback_sigcleanup();
      rl_callback_handler_remove();
      std::fputc('\n', rl_outstream);
      std::fflush(rl_outstream);
      return discarded;
    }
    pollfd input{STDIN_FILENO, POLLIN, 0};
    const int ready = poll(&input, 1, kPollMilliseconds);
    if (ready > 0) {
      rl_callback_read_char();
    } else if (ready < 0 && errno != EINTR) {
      rl_callback_handler_remove();
      fail("cannot read the terminal: {}", std::strerror(errno));
    }
  }
  return *g_entered;
}

}  // namespace realizar::cli
