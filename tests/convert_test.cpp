// apr convert / apr quantize against the golden Hugging Face checkpoints, and the type policy
// against the published Qwen2.5-0.5B-Instruct Q4_K_M file.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>

#include "realizar/convert.h"
#include "realizar/gguf.h"
#include "realizar/model.h"
#include "realizar/quant.h"
#include "realizar/safetensors.h"
#include "realizar/tokenizer_gguf.h"
#include "test_support.h"

namespace realizar {
namespace {

using testing::run_apr;
using testing::TempDir;

gguf::File convert(const TempDir& out, const std::string& model, const std::string& type) {
  const auto path = out / (model + "." + type + ".gguf");
  const auto result =
      run_apr({"convert", (testing::golden_checkpoints_dir() / model).string(), "-o", path.string(), "--type", type});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  return gguf::File::open(path);
}

std::vector<float> gguf_values(const gguf::File& file, const std::string& name) {
  const gguf::TensorInfo& t = file.tensor(name);
  std::vector<float> out(t.n_elements);
  dequantize_row(t.type, file.tensor_data(t), out.data(), static_cast<int64_t>(t.n_elements));
  return out;
}

std::vector<float> hf_values(const safetensors::Checkpoint& ckpt, const std::string& name) {
  const safetensors::TensorEntry& t = ckpt.tensor(name);
  std::vector<float> out(static_cast<size_t>(t.element_count()));
  safetensors::to_float32(t, out.data());
  return out;
}

// Independent restatement of llama.cpp's permute: reshape(n_head, 2, rows/n_head/2, cols)
// .swapaxes(1, 2).
std::vector<float> permute_rows(const std::vector<float>& w, int64_t rows, int64_t cols,
                                int64_t n_head) {
  const int64_t half = rows / n_head / 2;
  std::vector<float> out(w.size());
  for (int64_t h = 0; h < n_head; ++h)
    for (int64_t pair = 0; pair < 2; ++pair)
      for (int64_t j = 0; j < half; ++j)
        for (int64_t c = 0; c < cols; ++c)
          out[((h * half + j) * 2 + pair) * cols + c] = w[((h * 2 + pair) * half + j) * cols + c];
  return out;
}

TEST(Convert, LlamaMetadataNamesShapesAndPermutedQK) {
  TempDir out;
  const gguf::File file = convert(out, "llama", "f32");
  EXPECT_EQ(file.get_string("general.architecture"), "llama");
  EXPECT_EQ(file.get_uint("llama.embedding_length"), 64u);
  EXPECT_EQ(file.get_uint("llama.attention.head_count_kv"), 2u);
  EXPECT_EQ(file.get_uint("llama.rope.dimension_count"), 16u);
  EXPECT_EQ(file.get_uint("llama.attention.key_length"), 16u);  // head_dim is explicit
  EXPECT_FLOAT_EQ(file.get_float("llama.attention.layer_norm_rms_epsilon"), 1e-5f);
  EXPECT_EQ(file.get_uint("general.file_type"), 0u);
  EXPECT_EQ(file.get_uint("general.quantization_version"), 2u);
  EXPECT_EQ(file.find("llama.attention.layer_norm_epsilon"), nullptr);
  EXPECT_EQ(tokenizer_spec_from_gguf(file).model, "llama");
  EXPECT_EQ(file.tensor("blk.1.ffn_down.weight").dims, (std::vector<uint64_t>{176, 64}));
  EXPECT_EQ(file.tensor("output.weight").type, TensorType::F32);

  const auto ckpt = safetensors::Checkpoint::open(testing::golden_checkpoints_dir() / "llama");
  for (int layer = 0; layer < 2; ++layer) {
    const std::string hf = "model.layers." + std::to_string(layer) + ".self_attn.";
    const std::string blk = "blk." + std::to_string(layer) + ".";
    EXPECT_EQ(gguf_values(file, blk + "attn_q.weight"),
              permute_rows(hf_values(ckpt, hf + "q_proj.weight"), 64, 64, 4));
    EXPECT_EQ(gguf_values(file, blk + "attn_k.weight"),
              permute_rows(hf_values(ckpt, hf + "k_proj.weight"), 32, 64, 2));
    EXPECT_EQ(gguf_values(file, blk + "attn_v.weight"), hf_values(ckpt, hf + "v_proj.weight"));
  }
  EXPECT_EQ(gguf_values(file, "token_embd.weight"), hf_values(ckpt, "model.embed_tokens.weight"));
  EXPECT_EQ(gguf_values(file, "output.weight"), hf_values(ckpt, "lm_head.weight"));
}

TEST(Convert, EveryArchitectureLoadsAndHalfPrecisionIsExact) {
  const std::map<std::string, std::pair<std::string, std::string>> pairs = {
      {"qwen2", {"blk.0.attn_q.bias", "model.layers.0.self_attn.q_proj.bias"}},
      {"phi2", {"blk.1.ffn_up.weight", "model.layers.1.mlp.fc1.weight"}}};
  for (const auto& [model, names] : pairs) {
    const auto ckpt = safetensors::Checkpoint::open(testing::golden_checkpoints_dir() / model);
    for (const std::string type : {"f32", "f16", "bf16"}) {
      TempDir out;
      const gguf::File file = convert(out, model, type);
      const ModelConfig config = ModelConfig::from_gguf(file);
      EXPECT_NO_THROW(ModelWeights::from_gguf(file, config)) << model << " " << type;
      EXPECT_EQ(gguf_values(file, names.first), hf_values(ckpt, names.second)) << model << type;
      EXPECT_EQ(file.tensor("token_embd.weight").type,
                *tensor_type_from_name(type)) << model;
    }
  }
  TempDir out;
  const gguf::File phi = convert(out, "phi2", "f16");
  EXPECT_EQ(phi.get_uint("phi2.rope.dimension_count"), 8u);  // 16 * partial_rotary_factor 0.5
  EXPECT_NE(phi.find("phi2.attention.layer_norm_epsilon"), nullptr);
  EXPECT_NE(phi.find_tensor("output.bias"), nullptr);
  const gguf::File qwen = convert(out, "qwen2", "f16");
  EXPECT_EQ(qwen.find_tensor("output.weight"), nullptr);  // tied
  EXPECT_EQ(qwen.tensor("blk.0.attn_norm.weight").type, TensorType::F32);
}

// The Q4_K_M mix of the published Qwen2.5-0.5B-Instruct-Q4_K_M.gguf (Qwen/Qwen2.5-0.5B-Instruct-GGUF):
// rows of 896 cannot hold K-quant super-blocks, so Q4_K → Q5_0 and Q6_K → Q8_0; ffn_down rows of
// 4864 = 19 * 256 keep Q4_K/Q6_K. "More bits" layers of 24: 0-2, 21-23 and 5, 8, 11, 14, 17, 20.
TEST(TypePolicy, Q4KMOfQwen25HalfBMatchesThePublishedFile) {
  const std::set<int> more_bits = {0, 1, 2, 5, 8, 11, 14, 17, 20, 21, 22, 23};
  const SynthPreset& preset = synth_preset("qwen2.5-0.5b");
  for (const TensorPlan& plan : synth_tensor_layout(preset, preset.vocab, QuantScheme::Q4_K_M)) {
    const std::string& n = plan.name;
    TensorType expected = TensorType::Q5_0;
    if (n.ends_with(".bias") || n.ends_with("norm.weight")) {
      expected = TensorType::F32;
    } else if (n == "token_embd.weight") {
      expected = TensorType::Q8_0;
    } else if (n.ends_with("attn_v.weight") || n.ends_with("ffn_down.weight")) {
      const bool more = more_bits.count(std::stoi(n.substr(4)));
      const bool down = n.ends_with("ffn_down.weight");
      expected = more ? (down ? TensorType::Q6_K : TensorType::Q8_0)
                      : (down ? TensorType::Q4_K : TensorType::Q5_0);
    }
    EXPECT_EQ(tensor_type_name(plan.type), tensor_type_name(expected)) << n;
  }
}

TEST(TypePolicy, UntiedOutputAndOtherSchemes) {
  const ModelShape shape{32, true};
  const std::vector<uint64_t> wide = {4096, 4096};
  EXPECT_EQ(choose_tensor_type(QuantScheme::Q4_K_M, "output.weight", wide, shape), TensorType::Q6_K);
  EXPECT_EQ(choose_tensor_type(QuantScheme::Q4_K_M, "token_embd.weight", wide, shape), TensorType::Q4_K);
  EXPECT_EQ(choose_tensor_type(QuantScheme::Q5_K_M, "blk.4.attn_v.weight", wide, shape), TensorType::Q5_K);
  EXPECT_EQ(choose_tensor_type(QuantScheme::Q5_K_M, "blk.6.attn_v.weight", wide, shape), TensorType::Q6_K);
  EXPECT_EQ(choose_tensor_type(QuantScheme::Q5_K_M, "blk.6.ffn_up.weight", {{896, 10}}, shape), TensorType::Q5_1);
  EXPECT_EQ(choose_tensor_type(QuantScheme::Q4_K_M, "blk.0.attn_qkv.weight", wide, shape), TensorType::Q5_K);
  EXPECT_EQ(choose_tensor_type(QuantScheme::Q8_0, "output.weight", wide, shape), TensorType::Q8_0);
  EXPECT_EQ(choose_tensor_type(QuantScheme::Q4_0, "output.weight", wide, shape), TensorType::Q6_K);
  EXPECT_EQ(choose_tensor_type(QuantScheme::Q6_K, "blk.0.attn_norm.weight", {{4096}}, shape), TensorType::F32);
  EXPECT_EQ(llama_file_type(QuantScheme::Q4_K_M), 15u);
  EXPECT_EQ(llama_file_type(QuantScheme::BF16), 32u);
}

TEST(Quantize, RoundTripKeepsMetadataAndValuesWithinQuantError) {
  TempDir out;
  const gguf::File f32 = convert(out, "llama", "f32");
  const auto q8 = out / "llama.q8.gguf";
  const auto result = run_apr({"quantize", f32.path().string(), q8.string(), "q8_0"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const gguf::File file = gguf::File::open(q8);
  EXPECT_EQ(file.get_uint("general.file_type"), 7u);
  EXPECT_EQ(file.get_string_array("tokenizer.ggml.tokens"),
            f32.get_string_array("tokenizer.ggml.tokens"));
  EXPECT_EQ(file.tensors().size(), f32.tensors().size());
  EXPECT_EQ(file.tensor("blk.0.ffn_up.weight").type, TensorType::Q8_0);
  const auto before = gguf_values(f32, "blk.0.ffn_up.weight");
  const auto after = gguf_values(file, "blk.0.ffn_up.weight");
  float max_abs = 0, max_err = 0;
  for (size_t i = 0; i < before.size(); ++i) {
    max_abs = std::max(max_abs, std::abs(before[i]));
    max_err = std::max(max_err, std::abs(before[i] - after[i]));
  }
  EXPECT_GT(max_err, 0.0f);
  EXPECT_LE(max_err, max_abs / 127.0f);  // half a step of a block scale of max/127, at most
  EXPECT_EQ(gguf_values(file, "output_norm.weight"), gguf_values(f32, "output_norm.weight"));
}

void expect_convert_error(const std::filesystem::path& dir, const std::vector<std::string>& extra,
                          const std::string& fragment) {
  TempDir out;
  std::vector<std::string> args = {"convert", dir.string(), "-o", (out / "x.gguf").string()};
  args.insert(args.end(), extra.begin(), extra.end());
  const auto result = run_apr(args);
  EXPECT_EQ(result.exit_code, 1) << fragment;
  EXPECT_NE(result.err.find(fragment), std::string::npos) << result.err;
  EXPECT_FALSE(std::filesystem::exists(out / "x.gguf"));
}

TEST(Convert, ErrorsNameTheProblem) {
  TempDir work;
  const auto copy = work / "model";
  std::filesystem::copy(testing::golden_checkpoints_dir() / "llama", copy);
  expect_convert_error(copy, {"--type", "q3_k"}, "unknown type 'q3_k'");

  std::string config = testing::read_file(copy / "config.json");
  const std::string original = config;
  config.replace(config.find("LlamaForCausalLM"), 16, "MistralForCausalLM");
  testing::write_file(copy / "config.json", config);
  expect_convert_error(copy, {}, "unsupported architecture 'MistralForCausalLM'");

  testing::write_file(copy / "config.json", original);
  std::filesystem::copy_file(testing::golden_checkpoints_dir() / "qwen2" / "model.safetensors",
                             copy / "model.safetensors",
                             std::filesystem::copy_options::overwrite_existing);
  expect_convert_error(copy, {}, "tensor lm_head.weight not found");

  std::filesystem::remove(copy / "config.json");
  expect_convert_error(copy, {}, "config.json: not found");
}

}  // namespace
}  // namespace realizar
