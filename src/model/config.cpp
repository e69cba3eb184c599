#include <string>

#include "realizar/error.h"
#include "realizar/model.h"

namespace realizar {
namespace {

struct ArchitectureTraits {
  const char* name;
  Architecture architecture;
  RopeStyle rope_style;
  bool layer_norm;
  bool gelu_mlp;
  bool parallel_residual;
};

// The flags of each supported `general.architecture` (llama.cpp's llm_build_* for each).
constexpr ArchitectureTraits kArchitectures[] = {
    {"llama", Architecture::Llama, RopeStyle::Interleaved, false, false, false},
    {"qwen2", Architecture::Qwen2, RopeStyle::NeoX, false, false, false},
    {"phi2", Architecture::Phi2, RopeStyle::NeoX, true, true, true},
};

const ArchitectureTraits& traits_of(const gguf::File& file, const std::string& name) {
  for (const ArchitectureTraits& traits : kArchitectures) {
    if (name == traits.name) return traits;
  }
  fail("{}: unsupported architecture '{}' (supported: llama, qwen2, phi2)", file.path().string(),
       name);
}

int64_t positive(const gguf::File& file, const std::string& key, uint64_t value) {
  if (value == 0 || value > (uint64_t{1} << 31)) {
    fail("{}: metadata '{}' = {} is out of range", file.path().string(), key, value);
  }
  return static_cast<int64_t>(value);
}

}  // namespace

ModelConfig ModelConfig::from_gguf(const gguf::File& file) {
  const std::string arch = file.get_string("general.architecture");
  const ArchitectureTraits& traits = traits_of(file, arch);
  auto key = [&](const char* suffix) { return arch + "." + suffix; };
  auto required = [&](const char* suffix) {
    return positive(file, key(suffix), file.get_uint(key(suffix)));
  };

  ModelConfig c;
  c.architecture = traits.architecture;
  c.architecture_name = arch;
  c.rope_style = traits.rope_style;
  c.layer_norm = traits.layer_norm;
  c.gelu_mlp = traits.gelu_mlp;
  c.parallel_residual = traits.parallel_residual;

  c.context_length = required("context_length");
  c.embedding_length = required("embedding_length");
  c.block_count = required("block_count");
  c.feed_forward_length = required("feed_forward_length");
  c.head_count = required("attention.head_count");
  c.head_count_kv = positive(file, key("attention.head_count_kv"),
                             file.get_uint_or(key("attention.head_count_kv"), c.head_count));
  c.head_dim = positive(file, key("attention.key_length"),
                        file.get_uint_or(key("attention.key_length"),
                                         c.embedding_length / c.head_count));
  c.rope_dim = positive(file, key("rope.dimension_count"),
                        file.get_uint_or(key("rope.dimension_count"), c.head_dim));
  c.rope_freq_base = static_cast<float>(file.get_float_or(key("rope.freq_base"), 10000.0));
  c.norm_epsilon = static_cast<float>(
      c.layer_norm ? file.get_float(key("attention.layer_norm_epsilon"))
                   : file.get_float(key("attention.layer_norm_rms_epsilon")));

  const std::string& path = file.path().string();
  if (c.head_count % c.head_count_kv != 0) {
    fail("{}: {} attention heads cannot share {} KV heads evenly", path, c.head_count,
         c.head_count_kv);
  }
  if (c.rope_dim > c.head_dim || c.rope_dim % 2 != 0) {
    fail("{}: rope dimension {} must be even and at most the head size {}", path, c.rope_dim,
         c.head_dim);
  }
  if (!(c.norm_epsilon > 0.0f) || !(c.rope_freq_base > 0.0f)) {
    fail("{}: norm epsilon and rope.freq_base must be positive", path);
  }
  const gguf::TensorInfo& embd = file.tensor("token_embd.weight");
  if (embd.dims.size() != 2) fail("{}: token_embd.weight must be 2-D", path);
  c.vocab_size = positive(file, "token_embd.weight rows", embd.dims[1]);
  return c;
}

}  // namespace realizar
