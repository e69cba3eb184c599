// Progress of work that takes more than a moment (downloads, conversion, model loading), on
// standard error. On a terminal: one line redrawn in place at most 10 times a second — label,
// bar, done / total, rate, time left. Elsewhere (a pipe, a log file): a plain line at most every
// 5 seconds. Nothing is shown for work that ends within its first second, except by finish()
// when `always_report` asks for the final line.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace realizar {

class Progress {
 public:
  enum class Unit { Bytes, Items };

  // `total` 0: unknown (no bar, no time left).
  Progress(std::string label, uint64_t total, Unit unit, std::FILE* out = stderr);
  ~Progress();  // finish() if not yet called
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void advance(uint64_t amount) { update(done_ + amount); }
  void update(uint64_t done);
  void set_total(uint64_t total) { total_ = total; }
  // Prints `line` on the output as a line of its own: above the progress line on a terminal
  // (which is then drawn again), for messages such as a retry during a download.
  void note(std::string_view line);
  // Ends the display: on a terminal the line is completed; the final figures are printed when the
  // display was shown or `always_report` is true.
  void finish(bool always_report = false);

  // "1.2 GB", "340 MB", "12 KB", "17 B" (decimal units, as download tools print them), or a plain
  // count for Unit::Items.
  static std::string format_amount(uint64_t amount, Unit unit);

 private:
  void draw(bool final);
  double elapsed() const;

  std::string label_;
  uint64_t total_;
  uint64_t done_ = 0;
  Unit unit_;
  std::FILE* out_;
  bool terminal_;
  bool shown_ = false;
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  double last_draw_ = 0;
};

}  // namespace realizar
