// Ollama's API (https://github.com/ollama/ollama/blob/main/docs/api.md) on the same port, so
// tools written for Ollama work unchanged: /api/chat and /api/generate (streamed by default as
// newline-delimited JSON, or whole with "stream": false; durations in nanoseconds), /api/tags,
// /api/show, /api/ps and /api/version. Errors are Ollama's {"error": "message"}.
//
// Options read: temperature, top_k, top_p, min_p, num_predict (-1 and -2: until the context is
// full), num_ctx (a per-request context, at most the server's), seed, stop, repeat_penalty,
// repeat_last_n, presence_penalty, frequency_penalty; defaults as the OpenAI endpoints'
// (llama-server's). A prompt longer than num_ctx is refused (Ollama truncates it silently).
#pragma once

#include <nlohmann/json.hpp>

#include "server/generation.h"
#include "server/model_card.h"

namespace realizar::server {

// Throw a 400 ApiError naming the first bad field.
Generation prepare_ollama_chat(const nlohmann::json& body, const ModelContext& model);
Generation prepare_ollama_generate(const nlohmann::json& body, const ModelContext& model);

nlohmann::json ollama_tags(const ModelCard& card);
nlohmann::json ollama_show(const ModelCard& card);
// `on_gpu`: the weights live in device memory (size_vram).
nlohmann::json ollama_ps(const ModelCard& card, bool on_gpu);
// The Ollama version whose API shapes this server follows (tools gate features on it), and
// realizar's own.
nlohmann::json ollama_version();

}  // namespace realizar::server
