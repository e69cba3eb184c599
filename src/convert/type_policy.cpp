// Per-tensor quantization types: our reading of llama.cpp's llama_tensor_get_type
// (src/llama-quant.cpp) for the schemes we write, see include/realizar/convert.h.
#include <algorithm>
#include <cctype>
#include <charconv>

#include "realizar/convert.h"
#include "realizar/error.h"

namespace realizar {
namespace {

struct SchemeInfo {
  QuantScheme scheme;
  std::string_view name;
  uint32_t file_type;  // llama_ftype
  TensorType base;     // type of an ordinary matrix
};

constexpr SchemeInfo kSchemes[] = {
    {QuantScheme::F32, "f32", 0, TensorType::F32},
    {QuantScheme::F16, "f16", 1, TensorType::F16},
    {QuantScheme::BF16, "bf16", 32, TensorType::BF16},
    {QuantScheme::Q8_0, "q8_0", 7, TensorType::Q8_0},
    {QuantScheme::Q4_0, "q4_0", 2, TensorType::Q4_0},
    {QuantScheme::Q4_K_M, "q4_k_m", 15, TensorType::Q4_K},
    {QuantScheme::Q5_K_M, "q5_k_m", 17, TensorType::Q5_K},
    {QuantScheme::Q6_K, "q6_k", 18, TensorType::Q6_K},
};

const SchemeInfo& info(QuantScheme scheme) {
  return *std::find_if(std::begin(kSchemes), std::end(kSchemes),
                       [&](const SchemeInfo& s) { return s.scheme == scheme; });
}

bool is_float_scheme(QuantScheme scheme) {
  return scheme == QuantScheme::F32 || scheme == QuantScheme::F16 || scheme == QuantScheme::BF16;
}

bool ends_with(std::string_view text, std::string_view suffix) {
  return text.size() >= suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
}

// The N of "blk.N.<...>", or -1.
int64_t layer_of(std::string_view name) {
  constexpr std::string_view kPrefix = "blk.";
  if (!name.starts_with(kPrefix)) return -1;
  int64_t layer = -1;
  const char* begin = name.data() + kPrefix.size();
  std::from_chars(begin, name.data() + name.size(), layer);
  return layer;
}

// The policy before the row-length check.
TensorType preferred_type(QuantScheme scheme, std::string_view name, const ModelShape& model) {
  const TensorType base = info(scheme).base;
  const bool is_output =
      name == "output.weight" || (!model.has_output && name == "token_embd.weight");
  if (is_output) return base == TensorType::Q8_0 ? TensorType::Q8_0 : TensorType::Q6_K;
  const bool k_mix = scheme == QuantScheme::Q4_K_M || scheme == QuantScheme::Q5_K_M;
  if (!k_mix) return base;
  if (ends_with(name, "attn_v.weight") || ends_with(name, "ffn_down.weight")) {
    return use_more_bits(layer_of(name), model.block_count) ? TensorType::Q6_K : base;
  }
  if (ends_with(name, "attn_qkv.weight")) {
    return scheme == QuantScheme::Q4_K_M ? TensorType::Q5_K : TensorType::Q6_K;
  }
  return base;
}

// K-quants need rows of whole 256-element super-blocks; llama.cpp then picks a 32-block type of
// about the same size.
TensorType fallback_for_row_length(TensorType type, uint64_t ne0) {
  constexpr uint64_t kSuperBlock = 256;
  if (ne0 % kSuperBlock == 0) return type;
  switch (type) {
    case TensorType::Q4_K: return TensorType::Q5_0;
    case TensorType::Q5_K: return TensorType::Q5_1;
    case TensorType::Q6_K: return TensorType::Q8_0;
    default: return type;
  }
}

}  // namespace

QuantScheme quant_scheme_from_name(std::string_view name) {
  std::string lower(name);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  for (const SchemeInfo& s : kSchemes) {
    if (s.name == lower) return s.scheme;
  }
  fail("unknown type '{}' (expected one of f32, f16, bf16, q8_0, q4_0, q4_k_m, q5_k_m, q6_k)",
       name);
}

std::string_view quant_scheme_name(QuantScheme scheme) { return info(scheme).name; }

uint32_t llama_file_type(QuantScheme scheme) { return info(scheme).file_type; }

bool use_more_bits(int64_t layer, int64_t n_layers) {
  return layer < n_layers / 8 || layer >= 7 * n_layers / 8 || (layer - n_layers / 8) % 3 == 2;
}

TensorType choose_tensor_type(QuantScheme scheme, std::string_view name,
                              std::span<const uint64_t> dims, const ModelShape& model) {
  if (dims.size() < 2) return TensorType::F32;
  if (is_float_scheme(scheme)) return info(scheme).base;
  const TensorType type = fallback_for_row_length(preferred_type(scheme, name, model), dims[0]);
  // Rows that no 32-element block fits stay F16, as convert_hf_to_gguf.py does.
  return dims[0] % tensor_type_info(type).block_size == 0 ? type : TensorType::F16;
}

}  // namespace realizar
