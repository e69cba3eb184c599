#include "bench/openai_client.h"

#include <curl/curl.h>

#include <mutex>

#include "bench/sse.h"
#include "realizar/error.h"

namespace realizar::bench {
namespace {

constexpr long kConnectTimeoutMs = 10'000;
constexpr size_t kErrorBodyLimit = 64 * 1024;  // an error response is kept up to this size
constexpr size_t kEventLimit = 16 * 1024 * 1024;  // no stream event of a completion is this long

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

double seconds_since(WorkloadClock::time_point start) {
  return std::chrono::duration<double>(WorkloadClock::now() - start).count();
}

// The server's own words for an error body: OpenAI's {"error": {"message": ...}}, llama.cpp's
// and vLLM's variants, else the body's start.
std::string error_message(const std::string& body) {
  try {
    const nlohmann::json j = nlohmann::json::parse(body);
    if (j.contains("error")) {
      const nlohmann::json& e = j["error"];
      if (e.is_object() && e.contains("message") && e["message"].is_string()) return e["message"];
      if (e.is_string()) return e;
    }
    if (j.contains("message") && j["message"].is_string()) return j["message"];
    if (j.contains("detail") && j["detail"].is_string()) return j["detail"];
  } catch (const nlohmann::json::exception&) {
  }
  std::string head = body.substr(0, 200);
  for (char& c : head) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return head.empty() ? "(empty body)" : head;
}

class Curl {
 public:
  Curl() : handle_(curl_easy_init()) {
    if (handle_ == nullptr) fail("libcurl: cannot create a handle");
  }
  ~Curl() {
    curl_easy_cleanup(handle_);
    curl_slist_free_all(headers_);
  }
  Curl(const Curl&) = delete;
  Curl& operator=(const Curl&) = delete;

  CURL* get() { return handle_; }
  void json_headers() {
    headers_ = curl_slist_append(headers_, "Content-Type: application/json");
    headers_ = curl_slist_append(headers_, "Accept: text/event-stream, application/json");
    curl_easy_setopt(handle_, CURLOPT_HTTPHEADER, headers_);
  }
  long status() {
    long code = 0;
    curl_easy_getinfo(handle_, CURLINFO_RESPONSE_CODE, &code);
    return code;
  }

 private:
  CURL* handle_;
  curl_slist* headers_ = nullptr;
};

void common_options(CURL* curl, const std::string& url, double timeout_seconds, char* error_buffer) {
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);  // timeouts without SIGALRM: threads are safe
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, kConnectTimeoutMs);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_seconds * 1e3));
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error_buffer);
  curl_easy_setopt(curl, CURLOPT_TCP_NODELAY, 1L);
  error_buffer[0] = '\0';
}

std::string curl_failure(CURLcode code, const char* error_buffer) {
  return error_buffer[0] != '\0' ? std::string(error_buffer) : std::string(curl_easy_strerror(code));
}

// What one streamed request collects while its bytes arrive.
struct StreamState {
  Curl* curl = nullptr;
  Api api = Api::Completions;
  WorkloadClock::time_point run_start;
  RequestRecord* record = nullptr;
  long status = 0;
  std::string error_body;  // the body of a non-200 answer
  SseParser parser{[this](std::string_view data) { on_event(data); }};
  bool done = false;       // "data: [DONE]" seen
  bool usage_seen = false;
  int64_t chunks = 0;
  std::string text;  // everything streamed, for counting without usage

  void on_event(std::string_view data);
  void on_usage(const nlohmann::json& usage);
};

void StreamState::on_usage(const nlohmann::json& usage) {
  usage_seen = true;
  if (usage.contains("prompt_tokens") && usage["prompt_tokens"].is_number_integer()) {
    record->prompt_tokens = usage["prompt_tokens"].get<int64_t>();
  }
  if (usage.contains("completion_tokens") && usage["completion_tokens"].is_number_integer()) {
    record->output_tokens = usage["completion_tokens"].get<int64_t>();
  }
  if (usage.contains("prompt_tokens_details") && usage["prompt_tokens_details"].is_object()) {
    const nlohmann::json& d = usage["prompt_tokens_details"];
    if (d.contains("cached_tokens") && d["cached_tokens"].is_number_integer()) {
      record->cached_prompt_tokens = d["cached_tokens"].get<int64_t>();
    }
  }
}

void StreamState::on_event(std::string_view data) {
  if (!record->error.empty() || done) return;
  if (data == "[DONE]") {
    done = true;
    return;
  }
  const double now = seconds_since(run_start);
  nlohmann::json chunk;
  try {
    chunk = nlohmann::json::parse(data);
  } catch (const nlohmann::json::parse_error&) {
    record->error = "malformed stream chunk: " + std::string(data.substr(0, 120));
    return;
  }
  if (!chunk.is_object()) {
    record->error = "stream chunk is not a JSON object: " + std::string(data.substr(0, 120));
    return;
  }
  if (chunk.contains("error")) {
    record->error = "error event: " + error_message(chunk.dump());
    return;
  }
  if (chunk.contains("usage") && chunk["usage"].is_object()) on_usage(chunk["usage"]);
  if (!chunk.contains("choices") || !chunk["choices"].is_array() || chunk["choices"].empty()) return;
  const nlohmann::json& choice = chunk["choices"][0];
  std::string text;
  if (api == Api::Completions) {
    if (choice.contains("text") && choice["text"].is_string()) text = choice["text"];
  } else if (choice.contains("delta") && choice["delta"].is_object()) {
    const nlohmann::json& delta = choice["delta"];
    for (const char* key : {"content", "reasoning_content"}) {
      if (delta.contains(key) && delta[key].is_string()) text += delta[key].get<std::string>();
    }
  }
  if (text.empty()) return;  // role-only and finish chunks carry no token
  this->text += text;
  if (chunks == 0) record->first_token_time = now;
  record->token_times.push_back(now);
  ++chunks;
}

size_t on_stream_bytes(char* bytes, size_t size, size_t count, void* user) {
  auto* state = static_cast<StreamState*>(user);
  const size_t n = size * count;
  if (state->status == 0) state->status = state->curl->status();
  if (state->status != 200) {
    if (state->error_body.size() < kErrorBodyLimit) state->error_body.append(bytes, n);
    return n;
  }
  state->parser.feed({bytes, n});
  if (state->parser.pending_bytes() > kEventLimit) {
    state->record->error = fmt::format("a stream event grew past {} MiB without ending", kEventLimit >> 20);
    return 0;  // libcurl ends the transfer (CURLE_WRITE_ERROR); the record keeps this message
  }
  return n;
}

size_t append_to_string(char* bytes, size_t size, size_t count, void* user) {
  auto* body = static_cast<std::string*>(user);
  if (body->size() < 16 * 1024 * 1024) body->append(bytes, size * count);
  return size * count;
}

}  // namespace

Api parse_api(std::string_view name) {
  if (name == "completions") return Api::Completions;
  if (name == "chat") return Api::Chat;
  fail("--endpoint: want completions or chat, got '{}'", name);
}

std::string_view api_name(Api api) {
  switch (api) {
    case Api::Completions:
      return "completions";
    case Api::Chat:
      return "chat";
  }
  fail("unknown endpoint kind {}", static_cast<int>(api));
}

std::string normalize_base_url(std::string_view url) {
  if (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0) {
    fail("server URL '{}' does not start with http:// or https://", url);
  }
  std::string base(url);
  while (!base.empty() && base.back() == '/') base.pop_back();
  if (base.size() >= 3 && base.compare(base.size() - 3, 3, "/v1") == 0) base.resize(base.size() - 3);
  return base;
}

nlohmann::json request_body(const CompletionRequest& r) {
  nlohmann::json body = {{"model", r.model},
                         {"max_tokens", r.max_tokens},
                         {"temperature", 0.0},
                         {"stream", true},
                         {"stream_options", {{"include_usage", true}}}};
  if (r.api == Api::Completions) {
    body["prompt"] = r.prompt;
  } else {
    body["messages"] = nlohmann::json::array({{{"role", "user"}, {"content", r.prompt}}});
  }
  if (r.ignore_eos) body["ignore_eos"] = true;
  return body;
}

RequestRecord stream_completion(const std::string& base_url, const CompletionRequest& request,
                                WorkloadClock::time_point run_start) {
  RequestRecord record;
  record.prompt_tokens = request.prompt_tokens;
  try {
    global_init();
    Curl curl;
    char error_buffer[CURL_ERROR_SIZE];
    const std::string path = request.api == Api::Completions ? "/v1/completions" : "/v1/chat/completions";
    common_options(curl.get(), base_url + path, request.timeout_seconds, error_buffer);
    curl.json_headers();
    const std::string body = request_body(request).dump();
    curl_easy_setopt(curl.get(), CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(curl.get(), CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
    StreamState state;
    state.curl = &curl;
    state.api = request.api;
    state.run_start = run_start;
    state.record = &record;
    curl_easy_setopt(curl.get(), CURLOPT_WRITEFUNCTION, on_stream_bytes);
    curl_easy_setopt(curl.get(), CURLOPT_WRITEDATA, &state);
    record.send_time = seconds_since(run_start);
    const CURLcode code = curl_easy_perform(curl.get());
    record.end_time = seconds_since(run_start);
    if (state.status == 0) state.status = curl.status();
    if (code != CURLE_OK) {
      if (record.error.empty()) record.error = curl_failure(code, error_buffer);
      return record;
    }
    if (state.status != 200) {
      record.error = fmt::format("HTTP {}: {}", state.status, error_message(state.error_body));
      return record;
    }
    state.parser.finish();
    if (!record.error.empty()) return record;
    if (!state.done) {
      record.error = "the stream ended before data: [DONE]";
      return record;
    }
    if (!state.usage_seen) {
      record.output_tokens =
          request.tokenizer != nullptr
              ? static_cast<int64_t>(request.tokenizer->encode(state.text, false, false).size())
              : state.chunks;
    }
    if (record.output_tokens > 0 && state.chunks == 0) {
      record.error = fmt::format("usage counts {} tokens but no text was streamed", record.output_tokens);
    }
  } catch (const std::exception& e) {
    record.error = e.what();
    if (record.end_time < record.send_time) record.end_time = record.send_time;
  }
  return record;
}

std::vector<std::string> list_models(const std::string& base_url, double timeout_seconds) {
  global_init();
  Curl curl;
  char error_buffer[CURL_ERROR_SIZE];
  const std::string url = base_url + "/v1/models";
  common_options(curl.get(), url, timeout_seconds, error_buffer);
  std::string body;
  curl_easy_setopt(curl.get(), CURLOPT_WRITEFUNCTION, append_to_string);
  curl_easy_setopt(curl.get(), CURLOPT_WRITEDATA, &body);
  const CURLcode code = curl_easy_perform(curl.get());
  if (code != CURLE_OK) {
    fail("cannot reach {} ({}): is the server running?", url, curl_failure(code, error_buffer));
  }
  const long status = curl.status();
  if (status != 200) fail("{} answered HTTP {}: {}", url, status, error_message(body));
  std::vector<std::string> ids;
  try {
    const nlohmann::json j = nlohmann::json::parse(body);
    for (const nlohmann::json& m : j.at("data")) ids.push_back(m.at("id").get<std::string>());
  } catch (const nlohmann::json::exception&) {
    fail("{} did not send an OpenAI model list ({{\"data\": [{{\"id\": ...}}]}}): {}", url,
         error_message(body));
  }
  if (ids.empty()) fail("{} lists no models", url);
  return ids;
}

}  // namespace realizar::bench
