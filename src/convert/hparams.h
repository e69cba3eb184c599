// Architecture hyper-parameters as GGUF metadata ({arch}.* keys, llama.cpp's names), shared by
// the converter and the synthesiser.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "realizar/gguf.h"

namespace realizar::convert_detail {

struct HyperParams {
  std::string architecture;  // general.architecture: llama, qwen2, phi2
  std::string name;          // general.name
  int64_t context_length = 0;
  int64_t embedding_length = 0;
  int64_t block_count = 0;
  int64_t feed_forward_length = 0;
  int64_t head_count = 0;
  int64_t head_count_kv = 0;
  int64_t rope_dimension_count = 0;
  double rope_freq_base = 10000.0;
  double norm_epsilon = 1e-5;
  bool layer_norm = false;  // phi2: attention.layer_norm_epsilon instead of ..._rms_epsilon
  std::optional<int64_t> head_dim;  // written as key_length/value_length when explicit
};

// Writes general.architecture, general.name and the {arch}.* keys (UINT32 integers, FLOAT32
// floats, as gguf-py's add_* helpers do).
void write_hyper_params(gguf::Writer& writer, const HyperParams& params);

}  // namespace realizar::convert_detail
