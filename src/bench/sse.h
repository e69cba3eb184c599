// Server-sent events (the WHATWG HTML "event stream" format) as OpenAI-compatible servers stream
// completions: "data: {...}" lines, events ended by a blank line, "data: [DONE]" last. Bytes
// arrive in arbitrary pieces; the parser hands back each event's data as soon as the event is
// complete.
#pragma once

#include <functional>
#include <string>
#include <string_view>

namespace realizar::bench {

class SseParser {
 public:
  // Called with an event's data: the values of its "data:" lines joined by "\n" (one leading
  // space after the colon removed). Events without data are not reported; comment lines (":")
  // and other fields (event:, id:, retry:) are ignored.
  using EventHandler = std::function<void(std::string_view data)>;

  explicit SseParser(EventHandler on_event) : on_event_(std::move(on_event)) {}

  // Feeds the next bytes of the stream; lines may end in "\n", "\r\n" or "\r".
  void feed(std::string_view bytes);
  // End of stream: an event still being collected is dispatched (servers that close the
  // connection right after the last data line).
  void finish();
  // Bytes held for the line and the event not yet complete (a caller bounds them).
  size_t pending_bytes() const { return pending_.size() + data_.size(); }

 private:
  void line(std::string_view text);
  void dispatch();

  EventHandler on_event_;
  std::string pending_;  // an incomplete line
  std::string data_;
  bool has_data_ = false;
  bool skip_lf_ = false;  // the previous piece ended in "\r" (a "\r\n" may be split)
};

}  // namespace realizar::bench
