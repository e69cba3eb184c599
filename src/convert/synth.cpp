// Random-weight models of real architectures (`apr synth`), streamed through write_tensors.
#include <cmath>

#include "convert/hparams.h"
#include "realizar/convert.h"
#include "realizar/error.h"
#include "realizar/tokenizer.h"
#include "realizar/tokenizer_gguf.h"
#include "util/thread_pool.h"

namespace realizar {
namespace {

constexpr double kWeightStddev = 0.02;

// Qwen2.5 configs: the released config.json files of Qwen/Qwen2.5-{0.5B,1.5B,7B,32B}; TinyLlama:
// TinyLlama/TinyLlama-1.1B-Chat-v1.0.
const std::vector<SynthPreset> kPresets = {
    {"qwen2.5-0.5b", "qwen2", 896, 24, 14, 2, 4864, 151936, 32768, 1e6, 1e-6, true, true},
    {"qwen2.5-1.5b", "qwen2", 1536, 28, 12, 2, 8960, 151936, 32768, 1e6, 1e-6, true, true},
    {"qwen2.5-7b", "qwen2", 3584, 28, 28, 4, 18944, 152064, 32768, 1e6, 1e-6, false, true},
    {"qwen2.5-32b", "qwen2", 5120, 64, 40, 8, 27648, 152064, 32768, 1e6, 1e-6, false, true},
    {"tinyllama-1.1b", "llama", 2048, 22, 32, 4, 5632, 32000, 2048, 1e4, 1e-5, false, false},
    {"tiny", "llama", 64, 2, 4, 2, 128, 0, 256, 1e4, 1e-5, false, false},
};

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint64_t fnv1a(std::string_view text) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char c : text) h = (h ^ c) * 0x100000001B3ull;
  return h;
}

// One approximately normal value per counter: the sum of four 16-bit uniforms (Irwin–Hall, mean
// 2, variance 1/3) rescaled to mean 0, standard deviation `stddev`.
float normal_from_counter(uint64_t counter, float scale) {
  const uint64_t bits = splitmix64(counter);
  const uint32_t sum = static_cast<uint32_t>(bits & 0xFFFF) + ((bits >> 16) & 0xFFFF) +
                       ((bits >> 32) & 0xFFFF) + (bits >> 48);
  return (static_cast<float>(sum) - 2.0f * 65535.0f) * scale;
}

bool is_norm(std::string_view name) { return name.find("_norm.") != std::string_view::npos; }

// Rows of a random tensor: element j of row r uses counter seed(name) + r * ne0 + j, so every
// element is fixed by the seed alone.
std::function<void(int64_t, int64_t, float*)> random_rows(const std::string& name, int64_t ne0,
                                                          uint64_t seed) {
  if (is_norm(name)) {
    return [ne0](int64_t, int64_t count, float* out) { std::fill_n(out, count * ne0, 1.0f); };
  }
  const uint64_t base = splitmix64(seed ^ fnv1a(name));
  const float scale = static_cast<float>(kWeightStddev * std::sqrt(3.0) / 65536.0);
  return [base, ne0, scale](int64_t first, int64_t count, float* out) {
    const uint64_t start = base + static_cast<uint64_t>(first * ne0);
    for (int64_t i = 0; i < count * ne0; ++i) {
      out[i] = normal_from_counter(start + static_cast<uint64_t>(i), scale);
    }
  };
}

// GPT-2's printable stand-ins for the 256 byte values (bytes_to_unicode in OpenAI's encoder.py):
// printable Latin-1 bytes stand for themselves, the others map to U+0100 upwards.
std::string byte_token(int byte) {
  const bool printable = (byte >= 33 && byte <= 126) || (byte >= 161 && byte <= 172) || byte >= 174;
  int code = byte;
  if (!printable) {
    int shifted = 0;
    for (int b = 0; b < byte; ++b) {
      if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174)) ++shifted;
    }
    code = 256 + shifted;
  }
  std::string utf8;
  if (code < 0x80) {
    utf8 += static_cast<char>(code);
  } else {
    utf8 += static_cast<char>(0xC0 | (code >> 6));
    utf8 += static_cast<char>(0x80 | (code & 0x3F));
  }
  return utf8;
}

// Without --tokenizer: a byte-level vocabulary of the 256 bytes (no merges, so text encodes one
// token per byte) plus <|endoftext|> as EOS, enough to run the model end to end.
TokenizerSpec byte_level_tokenizer() {
  TokenizerSpec spec;
  spec.model = "gpt2";
  spec.pre = "gpt2";
  for (int byte = 0; byte < 256; ++byte) {
    spec.tokens.push_back(byte_token(byte));
    spec.token_type.push_back(static_cast<int32_t>(TokenType::normal));
  }
  spec.tokens.push_back("<|endoftext|>");
  spec.token_type.push_back(static_cast<int32_t>(TokenType::control));
  spec.eos_token_id = 256;
  spec.bos_token_id = 256;
  spec.add_bos_token = false;
  return spec;
}

TokenizerSpec synth_tokenizer(const SynthOptions& options) {
  if (!options.tokenizer_json) return byte_level_tokenizer();
  const auto config = options.tokenizer_json->parent_path() / "tokenizer_config.json";
  return load_hf_tokenizer(*options.tokenizer_json,
                           std::filesystem::exists(config) ? std::optional(config) : std::nullopt);
}

void add_matrix(std::vector<TensorPlan>& plans, std::string name, int64_t cols, int64_t rows) {
  plans.push_back({std::move(name), TensorType::F32,
                   {static_cast<uint64_t>(cols), static_cast<uint64_t>(rows)}, {}});
}

void add_vector(std::vector<TensorPlan>& plans, std::string name, int64_t n) {
  plans.push_back({std::move(name), TensorType::F32, {static_cast<uint64_t>(n)}, {}});
}

}  // namespace

const std::vector<SynthPreset>& synth_presets() { return kPresets; }

const SynthPreset& synth_preset(std::string_view name) {
  std::string names;
  for (const SynthPreset& preset : kPresets) {
    if (preset.name == name) return preset;
    names += (names.empty() ? "" : ", ") + preset.name;
  }
  fail("unknown synth preset '{}' (presets: {})", name, names);
}

std::vector<TensorPlan> synth_tensor_layout(const SynthPreset& p, int64_t vocab,
                                            QuantScheme scheme) {
  const int64_t head_dim = p.hidden / p.heads;
  const int64_t q_dim = p.heads * head_dim, kv_dim = p.kv_heads * head_dim;
  std::vector<TensorPlan> plans;
  add_matrix(plans, "token_embd.weight", p.hidden, vocab);
  for (int64_t i = 0; i < p.layers; ++i) {
    const std::string blk = "blk." + std::to_string(i) + ".";
    add_vector(plans, blk + "attn_norm.weight", p.hidden);
    add_matrix(plans, blk + "attn_q.weight", p.hidden, q_dim);
    add_matrix(plans, blk + "attn_k.weight", p.hidden, kv_dim);
    add_matrix(plans, blk + "attn_v.weight", p.hidden, kv_dim);
    if (p.qkv_bias) {
      add_vector(plans, blk + "attn_q.bias", q_dim);
      add_vector(plans, blk + "attn_k.bias", kv_dim);
      add_vector(plans, blk + "attn_v.bias", kv_dim);
    }
    add_matrix(plans, blk + "attn_output.weight", q_dim, p.hidden);
    add_vector(plans, blk + "ffn_norm.weight", p.hidden);
    add_matrix(plans, blk + "ffn_gate.weight", p.hidden, p.ffn);
    add_matrix(plans, blk + "ffn_up.weight", p.hidden, p.ffn);
    add_matrix(plans, blk + "ffn_down.weight", p.ffn, p.hidden);
  }
  add_vector(plans, "output_norm.weight", p.hidden);
  if (!p.tied_embeddings) add_matrix(plans, "output.weight", p.hidden, vocab);
  const ModelShape shape{p.layers, !p.tied_embeddings};
  for (TensorPlan& plan : plans) plan.type = choose_tensor_type(scheme, plan.name, plan.dims, shape);
  return plans;
}

void synth_model(const SynthPreset& preset, const std::filesystem::path& out,
                 const SynthOptions& options, ThreadPool& pool) {
  TokenizerSpec tokenizer = synth_tokenizer(options);
  const int64_t vocab =
      preset.vocab != 0 ? preset.vocab : static_cast<int64_t>(tokenizer.tokens.size());
  pad_vocab(tokenizer, static_cast<size_t>(vocab));  // throws if the tokenizer is larger

  const int64_t head_dim = preset.hidden / preset.heads;
  gguf::Writer writer(out);
  convert_detail::write_hyper_params(
      writer, {.architecture = preset.architecture, .name = preset.name,
               .context_length = preset.context, .embedding_length = preset.hidden,
               .block_count = preset.layers, .feed_forward_length = preset.ffn,
               .head_count = preset.heads, .head_count_kv = preset.kv_heads,
               .rope_dimension_count = head_dim, .rope_freq_base = preset.rope_theta,
               .norm_epsilon = preset.rms_eps, .layer_norm = false, .head_dim = {}});
  set_file_type_metadata(writer, options.scheme);
  write_tokenizer_metadata(writer, tokenizer);

  std::vector<TensorPlan> plans = synth_tensor_layout(preset, vocab, options.scheme);
  for (TensorPlan& plan : plans) {
    plan.rows = random_rows(plan.name, static_cast<int64_t>(plan.dims[0]), options.seed);
  }
  write_tensors(writer, std::move(plans), pool);
}

}  // namespace realizar
