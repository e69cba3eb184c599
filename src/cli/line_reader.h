// Lines for `apr chat`: typed at a terminal with GNU readline (line editing, history kept in a
// file), or read one per line from a pipe or file; and the signals of a terminal session, noted by
// handlers that only store a number (async-signal-safe) for the chat loop to poll.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

namespace realizar::cli {

// Installs the handlers for the rest of the process (until then these signals end it): SIGINT
// (Ctrl-C) is counted; SIGTERM and SIGHUP ask the chat to leave, so that it restores the terminal
// and saves the history rather than dying with the terminal in readline's mode.
void catch_terminal_signals();
// SIGINTs since the last take_interrupts().
int pending_interrupts();
// Returns pending_interrupts() and sets it to 0.
int take_interrupts();
// Whether a SIGTERM or SIGHUP came.
bool leave_requested();

struct InputLine {
  enum class Kind {
    Line,         // `text` was entered
    Interrupted,  // Ctrl-C at the prompt: `text` is what was typed, now discarded
    End,          // Ctrl-D at an empty prompt, the end of the input, or leave_requested()
  };
  Kind kind = Kind::End;
  std::string text;
};

class LineReader {
 public:
  // Reads with readline when standard input is a terminal, else plain lines. `history_file`: where
  // a terminal's history is loaded from and saved to (nullopt: not kept).
  LineReader(std::string prompt, std::optional<std::filesystem::path> history_file);
  ~LineReader();  // saves the history
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  bool interactive() const { return interactive_; }
  // The next line. On a terminal, waits for a key or a SIGINT (polled, so a Ctrl-C comes back as
  // Interrupted at once); a trailing '\r' of a piped line is removed.
  InputLine read();

 private:
  InputLine read_terminal();

  bool interactive_;
  std::string prompt_;
  std::optional<std::filesystem::path> history_file_;
};

}  // namespace realizar::cli
