// libcurl easy transfers for the hub client (one handle per request: requests are few and
// large, so connection reuse buys nothing measurable).
#include "hub/http.h"

#include <curl/curl.h>
#include <fmt/format.h>

#include <chrono>
#include <exception>
#include <memory>
#include <thread>

#include "hub/text.h"

namespace realizar::hub {
namespace {

constexpr long kMaxRedirects = 10;
constexpr long kBufferBytes = 512 * 1024;  // fewer, larger write callbacks for big files
constexpr const char* kUserAgent = "realizar-apr/0.1";

void global_init() {
  static const CURLcode code = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (code != CURLE_OK) fail("libcurl could not start: {}", curl_easy_strerror(code));
}

// Transport failures a later attempt may not meet: the network, the server going away, a stall.
bool retriable_code(CURLcode code) {
  switch (code) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:  // also the low-speed (stall) limit
    case CURLE_PARTIAL_FILE:        // the connection closed before Content-Length bytes
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
      return true;
    default:
      return false;
  }
}

struct Transfer {
  HttpAttempt result;
  const BodySink* on_body = nullptr;
  CURL* curl = nullptr;
  bool aborted = false;
  std::exception_ptr error;  // thrown by on_body: rethrown once libcurl has returned
};

// Keeps the headers of the last response only (a redirect's are replaced by its target's).
size_t on_header(char* data, size_t size, size_t count, void* user) {
  auto& t = *static_cast<Transfer*>(user);
  const std::string_view line(data, size * count);
  if (line.starts_with("HTTP/")) {
    t.result.content_range.clear();
    t.result.error_code.clear();
    t.result.error_message.clear();
    return line.size();
  }
  const size_t colon = line.find(':');
  if (colon == std::string_view::npos) return line.size();
  const std::string name = ascii_lower(line.substr(0, colon));
  std::string_view value = line.substr(colon + 1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' ')) {
    value.remove_suffix(1);
  }
  if (name == "content-range") t.result.content_range = value;
  if (name == "x-error-code") t.result.error_code = value;
  if (name == "x-error-message") t.result.error_message = value;
  return line.size();
}

size_t on_write(char* data, size_t size, size_t count, void* user) {
  auto& t = *static_cast<Transfer*>(user);
  const size_t bytes = size * count;
  curl_easy_getinfo(t.curl, CURLINFO_RESPONSE_CODE, &t.result.status);
  if (t.result.status != 200 && t.result.status != 206) return bytes;  // an error page
  try {
    if ((*t.on_body)(t.result, std::string_view(data, bytes))) return bytes;
  } catch (...) {
    t.error = std::current_exception();  // exceptions must not cross libcurl's C frames
  }
  t.aborted = true;
  return CURL_WRITEFUNC_ERROR;
}

struct CurlDeleter {
  void operator()(CURL* curl) const { curl_easy_cleanup(curl); }
};
struct HeaderListDeleter {
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};

}  // namespace

bool retriable_status(long status) { return status == 408 || status == 429 || status >= 500; }

HttpStatusError::HttpStatusError(const HttpAttempt& attempt)
    : Error(fmt::format("HTTP {} from {}", attempt.status, attempt.url)),
      status(attempt.status),
      error_code(attempt.error_code),
      error_message(attempt.error_message),
      url(attempt.url) {}

HttpAttempt http_get(const HttpRequest& request, const BodySink& on_body) {
  global_init();
  const std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
  if (!curl) fail("libcurl could not create a transfer");
  Transfer t;
  t.on_body = &on_body;
  t.curl = curl.get();
  t.result.url = request.url;

  std::unique_ptr<curl_slist, HeaderListDeleter> headers;
  if (!request.token.empty()) {
    const std::string auth = "Authorization: Bearer " + request.token;
    headers.reset(curl_slist_append(nullptr, auth.c_str()));
  }
  const std::string range = fmt::format("{}-", request.resume_from);
  char error_buffer[CURL_ERROR_SIZE] = {};
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, kMaxRedirects);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_USERAGENT, kUserAgent);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
  if (request.resume_from > 0) curl_easy_setopt(c, CURLOPT_RANGE, range.c_str());
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, request.stall_seconds);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);  // below 1 byte/s for stall_seconds: a stall
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, request.stall_seconds);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_BUFFERSIZE, kBufferBytes);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error_buffer);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);

  const CURLcode code = curl_easy_perform(c);
  if (t.error) std::rethrow_exception(t.error);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &t.result.status);
  char* effective_url = nullptr;
  if (curl_easy_getinfo(c, CURLINFO_EFFECTIVE_URL, &effective_url) == CURLE_OK && effective_url) {
    t.result.url = effective_url;
  }
  if (t.aborted) {
    t.result.transport_error = "aborted";
  } else if (code == CURLE_OPERATION_TIMEDOUT && t.result.status != 0) {
    t.result.transport_error = fmt::format("stalled (no data for {} s)", request.stall_seconds);
    t.result.retriable = true;
  } else if (code != CURLE_OK) {
    t.result.transport_error = error_buffer[0] != '\0' ? error_buffer : curl_easy_strerror(code);
    t.result.retriable = retriable_code(code);
  }
  return t.result;
}

void with_retries(const HubSettings& settings, std::string_view what,
                  const std::function<std::optional<std::string>()>& attempt,
                  const std::function<void(const std::string&)>& note) {
  double wait = settings.first_retry_wait_seconds;
  for (int k = 1;; ++k) {
    const std::optional<std::string> failure = attempt();
    if (!failure) return;
    if (k >= settings.max_attempts) {
      fail("{}: giving up after {} attempts: {}", what, settings.max_attempts, *failure);
    }
    note(fmt::format("{}: {}; attempt {} of {} failed, retrying in {:g} s", what, *failure, k,
                     settings.max_attempts, wait));
    std::this_thread::sleep_for(std::chrono::duration<double>(wait));
    wait *= 2;
  }
}

std::string url_escape(std::string_view text, bool keep_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' ||
        (keep_slash && c == '/')) {
      out.push_back(ch);
    } else {
      out += {'%', kHex[c >> 4], kHex[c & 15]};
    }
  }
  return out;
}

}  // namespace realizar::hub
