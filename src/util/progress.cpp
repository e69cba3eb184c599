#include "util/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace realizar {
namespace {

constexpr double kQuietSeconds = 1.0;     // nothing is shown before this
constexpr double kTerminalPeriod = 0.1;   // redraws on a terminal
constexpr double kPlainPeriod = 5.0;      // lines elsewhere
constexpr int kBarWidth = 24;

std::string format_duration(double seconds) {
  const auto s = static_cast<long long>(std::llround(std::max(seconds, 0.0)));
  if (s >= 3600) return fmt::format("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
  return fmt::format("{}:{:02}", s / 60, s % 60);
}

}  // namespace

Progress::Progress(std::string label, uint64_t total, Unit unit, std::FILE* out)
    : label_(std::move(label)), total_(total), unit_(unit), out_(out), terminal_(isatty(fileno(out)) != 0) {}

Progress::~Progress() { finish(); }

std::string Progress::format_amount(uint64_t amount, Unit unit) {
  if (unit == Unit::Items) return fmt::format("{}", amount);
  const double v = static_cast<double>(amount);
  if (v >= 1e9) return fmt::format("{:.2f} GB", v / 1e9);
  if (v >= 1e6) return fmt::format("{:.1f} MB", v / 1e6);
  if (v >= 1e3) return fmt::format("{:.0f} KB", v / 1e3);
  return fmt::format("{} B", amount);
}

double Progress::elapsed() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::update(uint64_t done) {
  done_ = done;
  if (finished_) return;
  const double now = elapsed();
  if (now < kQuietSeconds || now - last_draw_ < (terminal_ ? kTerminalPeriod : kPlainPeriod)) return;
  last_draw_ = now;
  draw(false);
}

void Progress::finish(bool always_report) {
  if (finished_) return;
  finished_ = true;
  if (shown_ || always_report) draw(true);
}

void Progress::note(std::string_view line) {
  const bool redraw = terminal_ && shown_ && !finished_;
  std::fprintf(out_, "%s%.*s\n", redraw ? "\r\033[K" : "", static_cast<int>(line.size()),
               line.data());
  if (redraw) draw(false);
  std::fflush(out_);
}

void Progress::draw(bool final) {
  const double seconds = elapsed();
  const double rate = seconds > 0 ? static_cast<double>(done_) / seconds : 0.0;
  const std::string rate_text = unit_ == Unit::Bytes ? format_amount(static_cast<uint64_t>(rate), unit_) + "/s"
                                                     : fmt::format("{:.1f}/s", rate);
  std::string line = label_ + ": ";
  if (total_ > 0) {
    const double fraction = std::min(1.0, static_cast<double>(done_) / static_cast<double>(total_));
    if (terminal_) {
      const int filled = static_cast<int>(fraction * kBarWidth);
      line += "[" + std::string(static_cast<size_t>(filled), '=') +
              std::string(static_cast<size_t>(kBarWidth - filled), ' ') + "] ";
    }
    line += fmt::format("{:3.0f}% {} / {}", 100 * fraction, format_amount(done_, unit_), format_amount(total_, unit_));
  } else {
    line += format_amount(done_, unit_);
  }
  line += ", " + rate_text;
  if (final) {
    line += fmt::format(", {} total", format_duration(seconds));
  } else if (total_ > 0 && rate > 0 && done_ < total_) {
    line += ", " + format_duration(static_cast<double>(total_ - done_) / rate) + " left";
  }
  if (terminal_) {
    std::fprintf(out_, "\r\033[K%s%s", line.c_str(), final ? "\n" : "");
  } else {
    std::fprintf(out_, "%s\n", line.c_str());
  }
  std::fflush(out_);
  shown_ = true;
}

}  // namespace realizar
