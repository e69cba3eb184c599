// A client for OpenAI-compatible servers (`apr serve`, llama.cpp's llama-server, vLLM, Ollama's
// /v1) that streams one completion and times it: the send, every streamed chunk carrying text,
// the end. Token counts come from the final `usage` chunk (stream_options.include_usage), else
// from the streamed text under the served model's tokenizer when one is given, else from the
// number of text chunks. HTTP through libcurl, with a connection timeout and a total
// timeout per request so that a dead server cannot hang the benchmark.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/serving_metrics.h"
#include "bench/workload.h"
#include "realizar/tokenizer.h"

namespace realizar::bench {

enum class Api { Completions, Chat };  // /v1/completions, /v1/chat/completions

// "completions" or "chat"; throws realizar::Error naming the value otherwise.
Api parse_api(std::string_view name);
std::string_view api_name(Api api);

// "http://host:port", with any trailing "/" or "/v1" removed. Throws realizar::Error for a URL
// that is not http:// or https://.
std::string normalize_base_url(std::string_view url);

struct CompletionRequest {
  Api api = Api::Completions;
  std::string model;
  std::string prompt;
  int64_t prompt_tokens = 0;  // as planned; the record keeps it when the server reports none
  int64_t max_tokens = 16;
  bool ignore_eos = true;       // llama.cpp's and vLLM's extension: generate max_tokens tokens
  double timeout_seconds = 600; // the whole request, connection included
  const Tokenizer* tokenizer = nullptr;  // counts the output when the server sends no usage
};

// The JSON body sent for `request`: model, prompt (or one user message), max_tokens,
// temperature 0, stream true, stream_options.include_usage, and ignore_eos when asked.
nlohmann::json request_body(const CompletionRequest& request);

// Streams `request` to `base_url` and records it with times since `run_start`. Never throws:
// connection failures, HTTP errors (with the server's error message), error events, malformed
// chunks, streams that end before "data: [DONE]" and timeouts are reported in `error`.
RequestRecord stream_completion(const std::string& base_url, const CompletionRequest& request,
                                WorkloadClock::time_point run_start);

// GET /v1/models: the ids the server lists. Throws realizar::Error saying whether the server
// could not be reached, answered with an HTTP error, or sent something that is not a model list.
std::vector<std::string> list_models(const std::string& base_url, double timeout_seconds);

}  // namespace realizar::bench
