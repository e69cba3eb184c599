// Writing GGUF model files: the per-tensor quantization type policy, a streaming tensor writer
// shared by `apr convert`, `apr quantize` and `apr synth`, and the three producers.
//
// Tensor names, metadata keys and the type policy follow llama.cpp (gguf-py/gguf/constants.py,
// convert_hf_to_gguf.py, src/llama-quant.cpp `llama_tensor_get_type`), so that llama.cpp and gguf-py
// read our files and a converted model gets the tensor types of the published GGUF files.
// Commands and the policy table: docs/model-files.md.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "realizar/gguf.h"
#include "realizar/tensor_type.h"

namespace realizar {

class ThreadPool;

// ---- quantization type policy -------------------------------------------------------------------

// Target schemes, as `--type` names them: f32, f16, bf16, q8_0, q4_0, q4_k_m, q5_k_m, q6_k.
enum class QuantScheme { F32, F16, BF16, Q8_0, Q4_0, Q4_K_M, Q5_K_M, Q6_K };

// Parses a scheme name (case-insensitive); throws realizar::Error listing the valid names.
QuantScheme quant_scheme_from_name(std::string_view name);
std::string_view quant_scheme_name(QuantScheme scheme);

// The `general.file_type` value of a scheme (llama.cpp's enum llama_ftype: ALL_F32 = 0,
// MOSTLY_F16 = 1, MOSTLY_Q4_0 = 2, MOSTLY_Q8_0 = 7, MOSTLY_Q4_K_M = 15, MOSTLY_Q5_K_M = 17,
// MOSTLY_Q6_K = 18, MOSTLY_BF16 = 32).
uint32_t llama_file_type(QuantScheme scheme);

// What the policy needs to know about the whole model.
struct ModelShape {
  int64_t block_count = 0;   // layers (n for use_more_bits)
  bool has_output = true;    // false: tied embeddings, token_embd doubles as the output matrix
};

// The type of tensor `name` (GGUF name, e.g. "blk.3.attn_v.weight") with GGUF dims `dims`
// (ne0 first) under `scheme`:
//  - 1-D tensors (norms, biases) stay F32; f32/f16/bf16 schemes store every matrix in that type.
//  - quantized schemes: the base type (Q8_0, Q4_0, Q4_K, Q5_K, Q6_K), except
//      output.weight (token_embd.weight when !has_output) → Q6_K (Q8_0 under q8_0);
//      q4_k_m / q5_k_m: attn_v.weight and ffn_down.weight of layer i → Q6_K when
//        use_more_bits(i, n) = i < n/8 || i >= 7n/8 || (i - n/8) % 3 == 2;
//        attn_qkv.weight → Q5_K (q4_k_m) / Q6_K (q5_k_m).
//  - a K-quant chosen for a row length ne0 that is not a multiple of 256 falls back:
//      Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0 (llama.cpp's fallback table).
//  - rows whose length is not a multiple of 32 (the fallback's block) are stored as F16.
TensorType choose_tensor_type(QuantScheme scheme, std::string_view name,
                              std::span<const uint64_t> dims, const ModelShape& model);

bool use_more_bits(int64_t layer, int64_t n_layers);

// ---- streaming tensor writer --------------------------------------------------------------------

// One tensor to write. Its data is produced row by row (a row is ne0 = dims[0] elements; there are
// product(dims[1..]) rows) as float32 and encoded to `type`.
struct TensorPlan {
  std::string name;
  TensorType type = TensorType::F32;
  std::vector<uint64_t> dims;  // GGUF order: ne0 first
  // Fills `out` (count * dims[0] floats) with rows [first, first + count). Called from several
  // threads at once for disjoint row ranges, so it must only read shared state.
  std::function<void(int64_t first, int64_t count, float* out)> rows;

  int64_t row_count() const;
};

// Declares every plan's tensor on `writer` (which holds the metadata already), writes the header,
// then for each tensor produces and encodes chunks of rows in parallel on `pool` and appends them,
// and finishes the file. Memory use is bounded by a chunk (about 64 MiB of floats) whatever the
// tensor size. Throws realizar::Error when a type cannot be encoded (quant.h can_quantize).
void write_tensors(gguf::Writer& writer, std::vector<TensorPlan> plans, ThreadPool& pool);

// Sets `general.file_type` and `general.quantization_version` (2, the current ggml value).
void set_file_type_metadata(gguf::Writer& writer, QuantScheme scheme);

// ---- producers ----------------------------------------------------------------------------------

// `apr convert`: a Hugging Face checkpoint directory (config.json, *.safetensors single or sharded
// with model.safetensors.index.json, tokenizer.json, optional tokenizer_config.json) → GGUF.
// Architectures: Qwen2ForCausalLM → qwen2, LlamaForCausalLM → llama (Q/K rows permuted for
// interleaved RoPE), PhiForCausalLM → phi2. Throws realizar::Error for another architecture, a
// missing file or a missing tensor (message names it).
void convert_hf_to_gguf(const std::filesystem::path& hf_dir, const std::filesystem::path& out,
                        QuantScheme scheme, ThreadPool& pool);

// The row permutation llama.cpp's converter applies to LLaMA's q_proj/k_proj (and their biases):
// output row r of a [rows, cols] matrix with `n_head` heads is input row
// permuted_source_row(r, rows, n_head); i.e. W.reshape(n_head, 2, rows/n_head/2, cols)
// .swapaxes(1, 2).reshape(rows, cols) — rotate-half pairs (j, j + d/2) become adjacent (2j, 2j+1).
int64_t permuted_source_row(int64_t row, int64_t rows, int64_t n_head);

// `apr quantize`: requantizes every tensor of `in` under `scheme` (dequantize each row, encode);
// metadata is copied with general.file_type / general.quantization_version updated.
void quantize_gguf(const std::filesystem::path& in, const std::filesystem::path& out,
                   QuantScheme scheme, ThreadPool& pool);

// ---- synth --------------------------------------------------------------------------------------

// Hyper-parameters of a synthetic (random-weight) model of a real architecture.
struct SynthPreset {
  std::string name;          // qwen2.5-0.5b, ..., tiny
  std::string architecture;  // GGUF general.architecture: qwen2 or llama
  int64_t hidden = 0;
  int64_t layers = 0;
  int64_t heads = 0;
  int64_t kv_heads = 0;
  int64_t ffn = 0;
  int64_t vocab = 0;  // 0: the tokenizer's size (tiny)
  int64_t context = 0;
  double rope_theta = 10000.0;
  double rms_eps = 1e-5;
  bool tied_embeddings = false;
  bool qkv_bias = false;
};

// All presets, in the order `apr synth --help` lists them.
const std::vector<SynthPreset>& synth_presets();
// Throws realizar::Error listing the preset names when `name` is not one.
const SynthPreset& synth_preset(std::string_view name);

// The tensors of a model of `preset` with `vocab` rows: GGUF names and dims, with the types of
// `scheme` (rows left empty). The same list the synthesiser writes.
std::vector<TensorPlan> synth_tensor_layout(const SynthPreset& preset, int64_t vocab,
                                            QuantScheme scheme);

struct SynthOptions {
  QuantScheme scheme = QuantScheme::Q4_K_M;
  std::optional<std::filesystem::path> tokenizer_json;  // else a byte-level 256-token vocabulary
  uint64_t seed = 0;
};

// Writes a random-weight model: matrices ~ N(0, 0.02²) approximated by an Irwin–Hall sum of four
// uniforms from splitmix64 (seeded per tensor name and row, so the bytes depend only on `seed`,
// not on the thread count), norm weights 1; biases random like the matrices.
void synth_model(const SynthPreset& preset, const std::filesystem::path& out,
                 const SynthOptions& options, ThreadPool& pool);

}  // namespace realizar
