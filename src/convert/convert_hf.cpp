// `apr convert`: Hugging Face checkpoint → GGUF, names and metadata as llama.cpp's
// convert_hf_to_gguf.py writes them (see include/realizar/convert.h).
#include <fstream>
#include <nlohmann/json.hpp>

#include "convert/hparams.h"
#include "realizar/convert.h"
#include "realizar/error.h"
#include "realizar/safetensors.h"
#include "realizar/tokenizer.h"
#include "realizar/tokenizer_gguf.h"
#include "util/thread_pool.h"

namespace realizar {
namespace {

using nlohmann::json;
using safetensors::Checkpoint;
using safetensors::TensorEntry;

struct ArchitectureInfo {
  std::string_view hf_name;    // config.json "architectures"[0]
  std::string_view gguf_name;  // general.architecture
};

constexpr ArchitectureInfo kArchitectures[] = {
    {"Qwen2ForCausalLM", "qwen2"}, {"LlamaForCausalLM", "llama"}, {"PhiForCausalLM", "phi2"}};

json read_json(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) fail("{}: not found", path.string());
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    fail("{}: {}", path.string(), e.what());
  }
}

std::string gguf_architecture(const json& config, const std::filesystem::path& path) {
  const std::string hf = config.value("architectures", json::array({""})).at(0).get<std::string>();
  for (const ArchitectureInfo& a : kArchitectures) {
    if (a.hf_name == hf) return std::string(a.gguf_name);
  }
  fail("{}: unsupported architecture '{}' (supported: Qwen2ForCausalLM, LlamaForCausalLM, "
       "PhiForCausalLM)", path.string(), hf);
}

int64_t required_int(const json& config, const char* key, const std::filesystem::path& path) {
  if (!config.contains(key) || !config[key].is_number_integer()) {
    fail("{}: missing integer '{}'", path.string(), key);
  }
  return config[key].get<int64_t>();
}

convert_detail::HyperParams hyper_params(const json& c, const std::string& arch,
                                         const std::filesystem::path& config_path,
                                         const std::string& name) {
  convert_detail::HyperParams p;
  p.architecture = arch;
  p.name = name;
  p.context_length = required_int(c, "max_position_embeddings", config_path);
  p.embedding_length = required_int(c, "hidden_size", config_path);
  p.block_count = required_int(c, "num_hidden_layers", config_path);
  p.feed_forward_length = required_int(c, "intermediate_size", config_path);
  p.head_count = required_int(c, "num_attention_heads", config_path);
  p.head_count_kv = c.value("num_key_value_heads", p.head_count);
  if (c.contains("head_dim") && c["head_dim"].is_number_integer()) {
    p.head_dim = c["head_dim"].get<int64_t>();
  }
  const int64_t head_dim = p.head_dim.value_or(p.embedding_length / p.head_count);
  p.rope_freq_base = c.value("rope_theta", 10000.0);
  p.layer_norm = arch == "phi2";
  if (p.layer_norm) {
    p.norm_epsilon = c.value("layer_norm_eps", 1e-5);
    p.rope_dimension_count =
        static_cast<int64_t>(head_dim * c.value("partial_rotary_factor", 0.5));
  } else {
    p.norm_epsilon = c.value("rms_norm_eps", 1e-6);
    p.rope_dimension_count = head_dim;
  }
  return p;
}

// One GGUF tensor taken from one checkpoint tensor.
struct TensorSource {
  std::string gguf_name;
  std::string hf_name;
  bool required = true;
  int64_t permute_heads = 0;  // LLaMA q/k: rows reordered for interleaved RoPE (0: as is)
};

std::vector<TensorSource> tensor_sources(const std::string& arch, int64_t layers,
                                         int64_t heads, int64_t kv_heads, bool tied) {
  const bool phi = arch == "phi2";
  const bool llama = arch == "llama";
  std::vector<TensorSource> s = {{"token_embd.weight", "model.embed_tokens.weight"}};
  for (int64_t i = 0; i < layers; ++i) {
    const std::string blk = "blk." + std::to_string(i) + ".";
    const std::string hf = "model.layers." + std::to_string(i) + ".";
    s.push_back({blk + "attn_norm.weight", hf + "input_layernorm.weight"});
    if (phi) s.push_back({blk + "attn_norm.bias", hf + "input_layernorm.bias"});
    for (const auto& [g, h, n] : {std::tuple{"attn_q", "q_proj", heads}, {"attn_k", "k_proj", kv_heads},
                                  std::tuple{"attn_v", "v_proj", int64_t{0}}}) {
      const int64_t permute = llama ? n : 0;
      s.push_back({blk + g + ".weight", hf + "self_attn." + h + ".weight", true, permute});
      s.push_back({blk + g + ".bias", hf + "self_attn." + h + ".bias", phi, permute});
    }
    const std::string o_proj = hf + (phi ? "self_attn.dense" : "self_attn.o_proj");
    s.push_back({blk + "attn_output.weight", o_proj + ".weight"});
    s.push_back({blk + "attn_output.bias", o_proj + ".bias", phi});
    if (phi) {
      s.push_back({blk + "ffn_up.weight", hf + "mlp.fc1.weight"});
      s.push_back({blk + "ffn_up.bias", hf + "mlp.fc1.bias"});
      s.push_back({blk + "ffn_down.weight", hf + "mlp.fc2.weight"});
      s.push_back({blk + "ffn_down.bias", hf + "mlp.fc2.bias"});
    } else {
      s.push_back({blk + "ffn_norm.weight", hf + "post_attention_layernorm.weight"});
      s.push_back({blk + "ffn_gate.weight", hf + "mlp.gate_proj.weight"});
      s.push_back({blk + "ffn_up.weight", hf + "mlp.up_proj.weight"});
      s.push_back({blk + "ffn_down.weight", hf + "mlp.down_proj.weight"});
    }
  }
  const std::string final_norm = phi ? "model.final_layernorm" : "model.norm";
  s.push_back({"output_norm.weight", final_norm + ".weight"});
  if (phi) s.push_back({"output_norm.bias", final_norm + ".bias"});
  if (!tied) {
    s.push_back({"output.weight", "lm_head.weight"});
    s.push_back({"output.bias", "lm_head.bias", false});
  }
  return s;
}

// Elements [first, first + count) of `t` (flattened) converted to float32.
void read_elements(const TensorEntry& t, int64_t first, int64_t count, float* out) {
  const size_t size = safetensors::dtype_size(t.dtype);
  const TensorEntry part{{}, t.dtype, {count}, t.data.subspan(first * size, count * size), {}};
  safetensors::to_float32(part, out);
}

// Rows of a checkpoint tensor as float32, permuted when asked. A 1-D tensor is one row; its
// permutation (a q/k bias) moves elements.
std::function<void(int64_t, int64_t, float*)> checkpoint_rows(const TensorEntry& t,
                                                              int64_t permute_heads) {
  const int64_t ne0 = t.shape.back();
  const int64_t rows = t.shape.size() == 1 ? 1 : t.shape[0];
  if (permute_heads != 0 && t.shape.size() == 1) {
    return [&t, ne0, permute_heads](int64_t, int64_t, float* out) {
      std::vector<float> plain(static_cast<size_t>(ne0));
      read_elements(t, 0, ne0, plain.data());
      for (int64_t i = 0; i < ne0; ++i) out[i] = plain[permuted_source_row(i, ne0, permute_heads)];
    };
  }
  if (permute_heads == 0) {
    return [&t, ne0](int64_t first, int64_t count, float* out) {
      read_elements(t, first * ne0, count * ne0, out);
    };
  }
  return [&t, ne0, rows, permute_heads](int64_t first, int64_t count, float* out) {
    for (int64_t r = first; r < first + count; ++r) {
      read_elements(t, permuted_source_row(r, rows, permute_heads) * ne0, ne0,
                    out + (r - first) * ne0);
    }
  };
}

std::vector<uint64_t> gguf_dims(const std::vector<int64_t>& shape) {
  return {shape.rbegin(), shape.rend()};
}

TokenizerSpec checkpoint_tokenizer(const std::filesystem::path& dir, size_t embedding_rows) {
  const auto config = dir / "tokenizer_config.json";
  TokenizerSpec spec = load_hf_tokenizer(
      dir / "tokenizer.json", std::filesystem::exists(config) ? std::optional(config) : std::nullopt);
  if (spec.tokens.size() < embedding_rows) pad_vocab(spec, embedding_rows);
  return spec;
}

}  // namespace

int64_t permuted_source_row(int64_t row, int64_t rows, int64_t n_head) {
  const int64_t half = rows / n_head / 2;  // rotary pairs per head
  const int64_t head = row / (2 * half), within = row % (2 * half);
  return head * 2 * half + (within % 2) * half + within / 2;
}

void convert_hf_to_gguf(const std::filesystem::path& hf_dir, const std::filesystem::path& out,
                        QuantScheme scheme, ThreadPool& pool) {
  const auto config_path = hf_dir / "config.json";
  const json config = read_json(config_path);
  const std::string arch = gguf_architecture(config, config_path);
  const std::string name = std::filesystem::absolute(hf_dir).lexically_normal().filename().string();
  const convert_detail::HyperParams params = hyper_params(config, arch, config_path, name);
  const bool tied = config.value("tie_word_embeddings", false);
  const Checkpoint checkpoint = Checkpoint::open(hf_dir);

  const ModelShape shape{params.block_count, !tied};
  std::vector<TensorPlan> plans;
  for (const TensorSource& source :
       tensor_sources(arch, params.block_count, params.head_count, params.head_count_kv, tied)) {
    const TensorEntry* t = checkpoint.find(source.hf_name);
    if (t == nullptr) {
      if (source.required) fail("{}: tensor {} not found", hf_dir.string(), source.hf_name);
      continue;
    }
    if (t->shape.empty() || t->shape.size() > 2) {
      fail("{}: tensor {} has {} dimensions (1 or 2 expected)", hf_dir.string(), source.hf_name,
           t->shape.size());
    }
    std::vector<uint64_t> dims = gguf_dims(t->shape);
    const TensorType type = choose_tensor_type(scheme, source.gguf_name, dims, shape);
    plans.push_back({source.gguf_name, type, std::move(dims),
                     checkpoint_rows(*t, source.permute_heads)});
  }
  const TokenizerSpec tokenizer = checkpoint_tokenizer(hf_dir, plans.front().dims[1]);

  gguf::Writer writer(out);
  convert_detail::write_hyper_params(writer, params);
  set_file_type_metadata(writer, scheme);
  write_tokenizer_metadata(writer, tokenizer);
  write_tensors(writer, std::move(plans), pool);
}

}  // namespace realizar
