// HTTP GET for the hub client, through libcurl: redirects followed (http and https only; curl
// drops the Authorization header when a redirect leaves the host), a stall cut off after
// HubSettings::stall_seconds without data, each failure classified as worth another attempt or
// final, and bounded retries with doubling waits.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "realizar/error.h"
#include "realizar/hub.h"

namespace realizar::hub {

struct HttpRequest {
  std::string url;
  std::string token;         // sent as "Authorization: Bearer TOKEN" when not empty
  uint64_t resume_from = 0;  // > 0: "Range: bytes=N-"
  long stall_seconds = 10;
};

// What one attempt ended with.
struct HttpAttempt {
  std::string transport_error;  // empty: a complete response arrived
  bool retriable = false;       // for a transport error: worth another attempt
  long status = 0;              // the final response's status (after redirects); 0 if none
  std::string content_range;    // its Content-Range header
  std::string error_code;       // X-Error-Code (the hub's RepoNotFound, GatedRepo, ...)
  std::string error_message;    // X-Error-Message
  std::string url;              // the URL that answered (after redirects)
};

// Receives the body of a 200 or 206 response piece by piece, with the response so far (status
// and headers); returning false aborts the transfer (transport_error "aborted").
using BodySink = std::function<bool(const HttpAttempt& response, std::string_view piece)>;

// GET `request`. Bodies of other statuses are dropped. Never throws for network failures: they
// are described in the result; an exception from `on_body` ends the transfer and is rethrown.
HttpAttempt http_get(const HttpRequest& request, const BodySink& on_body);

// Statuses worth another attempt: 408, 429 and 5xx.
bool retriable_status(long status);

// A final (4xx) answer, for the caller to explain in terms of the repository and file.
class HttpStatusError : public Error {
 public:
  explicit HttpStatusError(const HttpAttempt& attempt);
  long status;
  std::string error_code;
  std::string error_message;
  std::string url;
};

// Calls `attempt` until it returns std::nullopt (done), at most settings.max_attempts times. A
// returned string is why the attempt failed; before the next one, `note` gets
// "WHAT: REASON; attempt K of N failed, retrying in S s" and the wait doubles from
// settings.first_retry_wait_seconds. After the last attempt, throws realizar::Error
// "WHAT: giving up after N attempts: REASON". Exceptions from `attempt` pass through.
void with_retries(const HubSettings& settings, std::string_view what,
                  const std::function<std::optional<std::string>()>& attempt,
                  const std::function<void(const std::string&)>& note);

// Percent-encoding of a URL component (RFC 3986 unreserved characters kept; '/' kept when
// `keep_slash`, for paths inside a repository).
std::string url_escape(std::string_view text, bool keep_slash);

}  // namespace realizar::hub
