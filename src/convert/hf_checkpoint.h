// Read-only access to the safetensors tensors of a Hugging Face checkpoint directory (a single
// model.safetensors, or shards listed by model.safetensors.index.json), for the converter.
// Format: https://github.com/huggingface/safetensors (8-byte little-endian header length, JSON
// header {name: {dtype, shape, data_offsets}}, then the data). Only the float dtypes checkpoints
// use (F32, F16, BF16) are read.
// Stand-in until the project's safetensors module (branch stsamp) lands; then this becomes a thin
// adapter over it.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "realizar/tensor_type.h"

namespace realizar::convert_detail {

struct CheckpointTensor {
  TensorType type = TensorType::F32;  // F32, F16 or BF16
  std::vector<int64_t> shape;         // PyTorch order: outermost first
  const uint8_t* data = nullptr;      // row-major, valid while the Checkpoint lives
};

class Checkpoint {
 public:
  // Maps every shard; throws realizar::Error naming the file on a malformed header, an
  // unsupported dtype or data outside the file.
  static Checkpoint open(const std::filesystem::path& dir);
  Checkpoint(Checkpoint&&) noexcept;
  ~Checkpoint();

  const CheckpointTensor* find(const std::string& name) const;  // nullptr when absent

 private:
  Checkpoint() = default;
  struct Mapping;
  std::vector<std::unique_ptr<Mapping>> mappings_;
  std::map<std::string, CheckpointTensor> tensors_;
};

}  // namespace realizar::convert_detail
