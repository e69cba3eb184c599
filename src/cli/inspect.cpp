// apr inspect MODEL [--json] [--ctx N]: what a GGUF model is and what it needs to run.
#include <fmt/format.h>

#include <memory>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "realizar/error.h"
#include "realizar/gguf.h"
#include "realizar/hub.h"
#include "realizar/model.h"
#include "realizar/tokenizer_gguf.h"

namespace realizar::cli {
namespace {

using nlohmann::json;

struct InspectArgs {
  std::string path;
  bool json = false;
  int64_t ctx = 0;
};

json hyper_parameters(const ModelConfig& c) {
  return {{"vocab_size", c.vocab_size},         {"context_length", c.context_length},
          {"embedding_length", c.embedding_length}, {"block_count", c.block_count},
          {"feed_forward_length", c.feed_forward_length}, {"head_count", c.head_count},
          {"head_count_kv", c.head_count_kv},   {"head_dim", c.head_dim},
          {"rope_dim", c.rope_dim},             {"rope_freq_base", c.rope_freq_base},
          {"norm_epsilon", c.norm_epsilon}};
}

json token_summary(const TokenizerSpec& spec, std::optional<int32_t> id) {
  if (!id) return nullptr;
  const bool known = *id >= 0 && static_cast<size_t>(*id) < spec.tokens.size();
  return {{"id", *id}, {"text", known ? json(spec.tokens[static_cast<size_t>(*id)]) : json()}};
}

json tokenizer_summary(const gguf::File& file) {
  if (!has_tokenizer(file)) return nullptr;
  const TokenizerSpec spec = tokenizer_spec_from_gguf(file);
  return {{"model", spec.model},
          {"pre", spec.pre},
          {"vocab_size", spec.tokens.size()},
          {"bos", token_summary(spec, spec.bos_token_id)},
          {"eos", token_summary(spec, spec.eos_token_id)},
          {"chat_template", spec.chat_template.has_value()}};
}

json tensor_table(const gguf::File& file, uint64_t& parameters, uint64_t& bytes) {
  json tensors = json::array();
  for (const gguf::TensorInfo& t : file.tensors()) {
    tensors.push_back({{"name", t.name},
                       {"type", tensor_type_name(t.type)},
                       {"shape", t.dims},
                       {"bytes", t.n_bytes}});
    parameters += t.n_elements;
    bytes += t.n_bytes;
  }
  return tensors;
}

// Everything inspect reports, as the --json object (field names are stable).
json describe(const gguf::File& file, int64_t ctx_override) {
  uint64_t parameters = 0, weight_bytes = 0;
  json report = {{"file", file.path().string()},
                 {"file_size", file.file_size()},
                 {"gguf_version", file.version()},
                 {"architecture", file.get_string_or("general.architecture", "")},
                 {"name", file.get_string_or("general.name", "")},
                 {"file_type", file.find("general.file_type") ? json(file.get_uint("general.file_type")) : json()}};
  report["tensors"] = tensor_table(file, parameters, weight_bytes);
  report["parameter_count"] = parameters;
  report["weights_bytes"] = weight_bytes;
  report["tokenizer"] = tokenizer_summary(file);
  const ModelConfig config = ModelConfig::from_gguf(file);
  report["hyperparameters"] = hyper_parameters(config);
  const int64_t ctx = ctx_override > 0 ? ctx_override : config.context_length;
  // fp16 K and V for every layer and position.
  const uint64_t kv_bytes = 2ull * config.block_count * ctx * config.kv_dim() * 2;
  report["context"] = ctx;
  report["kv_cache_bytes"] = kv_bytes;
  report["memory_bytes"] = weight_bytes + kv_bytes;
  return report;
}

std::string mib(uint64_t bytes) { return fmt::format("{:.1f} MiB", bytes / 1048576.0); }

std::string token_text(const json& token) {
  if (token.is_null()) return "none";
  return fmt::format("{} ({})", token["text"].is_null() ? "?" : token["text"].dump(),
                     token["id"].get<int64_t>());
}

void print_text(const json& r) {
  fmt::print("file: {} ({}, GGUF v{})\n", r["file"].get<std::string>(),
             mib(r["file_size"].get<uint64_t>()), r["gguf_version"].get<uint32_t>());
  fmt::print("architecture: {}\nname: {}\n", r["architecture"].get<std::string>(),
             r["name"].get<std::string>());
  for (const auto& [key, value] : r["hyperparameters"].items()) {
    fmt::print("  {}: {}\n", key, value.dump());
  }
  const json& tok = r["tokenizer"];
  if (tok.is_null()) {
    fmt::print("tokenizer: none\n");
  } else {
    fmt::print("tokenizer: {} (pre {}), {} tokens, bos {}, eos {}, chat template: {}\n",
               tok["model"].get<std::string>(), tok["pre"].get<std::string>(),
               tok["vocab_size"].get<size_t>(), token_text(tok["bos"]), token_text(tok["eos"]),
               tok["chat_template"].get<bool>() ? "yes" : "no");
  }
  fmt::print("tensors:\n");
  for (const json& t : r["tensors"]) {
    fmt::print("  {:<32} {:<6} {:<20} {}\n", t["name"].get<std::string>(),
               t["type"].get<std::string>(), t["shape"].dump(), t["bytes"].get<uint64_t>());
  }
  fmt::print("parameters: {}\n", r["parameter_count"].get<uint64_t>());
  fmt::print("weights: {}\nKV cache (fp16, ctx {}): {}\nmemory needed: {}\n",
             mib(r["weights_bytes"].get<uint64_t>()), r["context"].get<int64_t>(),
             mib(r["kv_cache_bytes"].get<uint64_t>()), mib(r["memory_bytes"].get<uint64_t>()));
}

CommandRunner setup(CLI::App& app) {
  auto args = std::make_shared<InspectArgs>();
  app.add_option("model", args->path, kModelHelp)->required();
  app.add_flag("--json", args->json, "print one JSON object instead of text");
  app.add_option("--ctx", args->ctx, "context length for the KV cache size (default: the model's)");
  return [args] {
    const gguf::File file = gguf::File::open(hub::resolve_model(args->path));
    const json report = describe(file, args->ctx);
    if (args->json) {
      fmt::print("{}\n", report.dump(1, ' ', false, json::error_handler_t::replace));
    } else {
      print_text(report);
    }
    return 0;
  };
}

const bool registered =
    register_command({"inspect", "show a GGUF model's metadata, tensors and memory needs", setup});

}  // namespace
}  // namespace realizar::cli
