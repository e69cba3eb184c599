// What the model listing endpoints say about the served model (/v1/models, Ollama's /api/tags,
// /api/show and /api/ps), gathered once when the model is loaded.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "realizar/engine.h"

namespace realizar::server {

struct ModelCard {
  std::string alias;               // the name clients see: --alias, else the file name without .gguf
  std::filesystem::path path;
  uint64_t size_bytes = 0;         // the GGUF file
  int64_t modified_unix = 0;       // the file's modification time, seconds since 1970
  std::string digest;              // "sha256:" + SHA-256 of the GGUF header (metadata and tensor
                                   // table, not the weights: hashing gigabytes would delay start)
  std::string family;              // general.architecture
  uint64_t parameter_count = 0;    // elements of every tensor
  std::string parameter_size;      // Ollama's spelling: "135M", "7.6B"
  std::string quantization_level;  // "Q4_K_M" from general.file_type, else the commonest matrix type
  std::string chat_template;       // tokenizer.chat_template (Jinja source), "" when absent
  int64_t training_context = 0;    // {arch}.context_length
  int64_t context_length = 0;      // per sequence, as served
};

// Throws realizar::Error when the file cannot be read.
ModelCard describe_model(const Engine& engine, const std::filesystem::path& path, std::string alias);

// The default alias of a model file: its name without the .gguf extension.
std::string default_alias(const std::filesystem::path& path);

// "2026-12-01T20:34:05Z" (RFC 3339, UTC), from seconds since 1970.
std::string rfc3339_utc(int64_t unix_seconds);
// The same to the nanosecond, as Ollama writes created_at.
std::string rfc3339_utc_now();

// Ollama's "details" object.
nlohmann::json ollama_details(const ModelCard& card);

}  // namespace realizar::server
