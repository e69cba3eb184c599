#include <algorithm>

#include "realizar/sampling.h"

namespace realizar {

StopMatcher::StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
  std::erase_if(stops_, [](const std::string& stop) { return stop.empty(); });
}

StopMatcher::Result StopMatcher::feed(std::string_view piece) {
  if (stopped_) return {"", true};
  pending_.append(piece);
  size_t first_stop = std::string::npos;
  for (const std::string& stop : stops_) first_stop = std::min(first_stop, pending_.find(stop));
  if (first_stop != std::string::npos) {
    stopped_ = true;
    std::string text = pending_.substr(0, first_stop);
    pending_.clear();
    return {std::move(text), true};
  }
  // No stop string lies inside pending_, so one can only start in its longest suffix that is a
  // prefix of some stop string: emit everything before that suffix.
  const size_t emit = pending_.size() - held_suffix_length();
  std::string text = pending_.substr(0, emit);
  pending_.erase(0, emit);
  return {std::move(text), false};
}

std::string StopMatcher::flush() {
  std::string text = std::move(pending_);
  pending_.clear();
  return text;
}

size_t StopMatcher::held_suffix_length() const {
  const std::string_view text = pending_;
  size_t longest = 0;
  for (std::string_view stop : stops_) {
    for (size_t length = std::min(text.size(), stop.size() - 1); length > longest; --length) {
      if (text.ends_with(stop.substr(0, length))) {
        longest = length;
        break;
      }
    }
  }
  return longest;
}

}  // namespace realizar
