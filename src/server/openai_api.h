// OpenAI's API (https://platform.openai.com/docs/api-reference) as llama-server and vLLM serve
// it: request bodies of /v1/chat/completions and /v1/completions parsed into engine requests,
// and the engine's events shaped into OpenAI's responses (whole, or streamed as server-sent
// events: the first chat delta carries the role, every chunk one piece of text, the last the
// finish reason, then the usage chunk when stream_options.include_usage asks, then
// "data: [DONE]"). Every response also carries llama-server's `timings` object.
// Also llama-server's /tokenize and /detokenize, which sit next to it.
//
// Parameters when a request sends none are llama-server's (temperature 0.8, top_k 40,
// top_p 0.95, min_p 0.05, no penalties), a random seed; max_tokens: 16 for completions (OpenAI's),
// the rest of the context for chat.
#pragma once

#include <nlohmann/json.hpp>

#include "realizar/engine.h"
#include "server/generation.h"
#include "server/model_card.h"

namespace realizar::server {

// Throw a 400 ApiError naming the first bad field (docs/server.md lists the checks).
Generation prepare_chat_completion(const nlohmann::json& body, const ModelContext& model);
Generation prepare_completion(const nlohmann::json& body, const ModelContext& model);

// GET /v1/models.
nlohmann::json models_list(const ModelCard& card);

// OpenAI's usage object, with prompt_tokens_details.cached_tokens.
nlohmann::json usage_json(const RequestStats& stats);
// llama-server's timings (tools/server/server.cpp, result_timings): prompt_n tokens computed
// (prefix-cache hits excluded, those are cache_n) in prompt_ms (from first scheduled to the first
// token); predicted_n tokens generated in predicted_ms (from the first token to the last); the
// per-token and per-second figures are those divided as llama-server divides them.
nlohmann::json timings_json(const RequestStats& stats);

// POST /tokenize {"content", "add_special" (false), "parse_special" (true), "with_pieces" (false)}
// and POST /detokenize {"tokens"}, with llama-server's defaults and shapes.
nlohmann::json tokenize(const nlohmann::json& body, const Tokenizer& tokenizer);
nlohmann::json detokenize(const nlohmann::json& body, const Tokenizer& tokenizer);

}  // namespace realizar::server
