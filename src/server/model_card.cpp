#include "server/model_card.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <ctime>
#include <fstream>
#include <map>
#include <vector>

#include "realizar/convert.h"
#include "realizar/error.h"
#include "realizar/tensor_type.h"
#include "util/sha256.h"

namespace realizar::server {
namespace {

constexpr std::array kSchemes{QuantScheme::F32,  QuantScheme::F16,    QuantScheme::BF16,   QuantScheme::Q8_0,
                              QuantScheme::Q4_0, QuantScheme::Q4_K_M, QuantScheme::Q5_K_M, QuantScheme::Q6_K};

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

// general.file_type names a scheme when it is one `apr convert` writes; otherwise (files from
// elsewhere, e.g. Q4_1) the type most of the matrices' elements are stored in.
std::string quantization_level(const gguf::File& file) {
  if (const gguf::Value* v = file.find("general.file_type"); v != nullptr) {
    const uint64_t file_type = file.get_uint("general.file_type");
    for (const QuantScheme s : kSchemes) {
      if (llama_file_type(s) == file_type) return upper(quant_scheme_name(s));
    }
  }
  std::map<TensorType, uint64_t> elements;
  for (const gguf::TensorInfo& t : file.tensors()) {
    if (t.dims.size() >= 2) elements[t.type] += t.n_elements;
  }
  if (elements.empty()) return "unknown";
  const auto most = std::max_element(elements.begin(), elements.end(),
                                     [](const auto& a, const auto& b) { return a.second < b.second; });
  return std::string(tensor_type_name(most->first));
}

std::string parameter_size(uint64_t count) {
  if (count >= 1'000'000'000) return fmt::format("{:.1f}B", count / 1e9);
  return fmt::format("{:.0f}M", count / 1e6);
}

std::string header_digest(const gguf::File& file) {
  std::ifstream in(file.path(), std::ios::binary);
  std::vector<char> header(file.data_offset());
  if (!in.read(header.data(), static_cast<std::streamsize>(header.size()))) {
    fail("{}: cannot read the GGUF header", file.path().string());
  }
  return "sha256:" + sha256_hex({reinterpret_cast<const uint8_t*>(header.data()), header.size()});
}

}  // namespace

std::string default_alias(const std::filesystem::path& path) {
  return path.extension() == ".gguf" ? path.stem().string() : path.filename().string();
}

std::string rfc3339_utc(int64_t unix_seconds) {
  const std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec);
}

std::string rfc3339_utc_now() {
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  const int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(now).count();
  std::string s = rfc3339_utc(ns / 1'000'000'000);
  s.pop_back();  // the 'Z', after the fraction
  return fmt::format("{}.{:09}Z", s, ns % 1'000'000'000);
}

ModelCard describe_model(const Engine& engine, const std::filesystem::path& path, std::string alias) {
  const Model& model = engine.model();
  ModelCard card;
  card.alias = alias.empty() ? default_alias(path) : std::move(alias);
  card.path = path;
  card.size_bytes = model.file.file_size();
  const auto modified = std::filesystem::last_write_time(path);
  card.modified_unix = std::chrono::duration_cast<std::chrono::seconds>(
                           std::chrono::file_clock::to_sys(modified).time_since_epoch())
                           .count();
  card.digest = header_digest(model.file);
  card.family = model.config.architecture_name;
  for (const gguf::TensorInfo& t : model.file.tensors()) card.parameter_count += t.n_elements;
  card.parameter_size = parameter_size(card.parameter_count);
  card.quantization_level = quantization_level(model.file);
  card.chat_template = model.tokenizer.spec().chat_template.value_or("");
  card.training_context = model.config.context_length;
  card.context_length = engine.context_length();
  return card;
}

nlohmann::json ollama_details(const ModelCard& card) {
  return {{"parent_model", ""},
          {"format", "gguf"},
          {"family", card.family},
          {"families", nlohmann::json::array({card.family})},
          {"parameter_size", card.parameter_size},
          {"quantization_level", card.quantization_level}};
}

}  // namespace realizar::server
