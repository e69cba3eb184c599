// Reader for Hugging Face safetensors checkpoints, single-file or sharded.
//
// Format (https://huggingface.co/docs/safetensors, "Format" section): an 8-byte little-endian
// unsigned header length N, N bytes of UTF-8 JSON
//   {"<tensor name>": {"dtype": "F16", "shape": [d0, d1, ...], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"<key>": "<string value>", ...}}
// then the data buffer. Offsets are bytes relative to the start of the data buffer; data is
// little-endian, row-major, shape outermost first (as in PyTorch). A sharded checkpoint adds
// `model.safetensors.index.json`: {"metadata": {...}, "weight_map": {"<tensor name>": "<shard file>"}}.
//
// Files are memory-mapped read-only; TensorEntry::data points into the mappings, which live as long
// as the Checkpoint. Every problem is reported as realizar::Error naming the file and the fault.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace realizar::safetensors {

// Element types as spelled in the header. Only F32, F16 and BF16 can be converted to float32;
// the others are listed so that checkpoints carrying e.g. an I64 position-id buffer still open.
enum class DType { BOOL, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64, C64 };

std::string_view dtype_name(DType dtype);
size_t dtype_size(DType dtype);  // bytes per element

struct TensorEntry {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;      // as stored, outermost first; empty for a scalar
  std::span<const std::byte> data; // the tensor's bytes inside the mapped file
  std::filesystem::path file;      // the file holding it (for messages)

  int64_t element_count() const;   // product of shape (1 for a scalar)
};

class MappedFile;  // private: src/safetensors/mapped_file.h

class Checkpoint {
 public:
  // Accepts a .safetensors file, a .safetensors.index.json file, or a directory holding
  // `model.safetensors.index.json`, else `model.safetensors`, else exactly one `*.safetensors`.
  // Throws realizar::Error on a missing or ambiguous path and on any malformed file: header
  // length past the end of the file or above 100 MB, invalid JSON, unknown dtype, data_offsets with
  // begin > end or past the data buffer, byte size != element count * dtype size, overlapping
  // tensors; for shards also a missing shard file, a tensor of the index absent from its shard, or a
  // tensor name present in two shards.
  static Checkpoint open(const std::filesystem::path& dir_or_file);

  Checkpoint(Checkpoint&&) noexcept;
  Checkpoint& operator=(Checkpoint&&) noexcept;
  ~Checkpoint();

  // All tensors of all files, sorted by name.
  const std::vector<TensorEntry>& tensors() const { return tensors_; }

  // nullptr when absent.
  const TensorEntry* find(std::string_view name) const;

  // Throws realizar::Error naming the tensor when absent.
  const TensorEntry& tensor(std::string_view name) const;

  // "__metadata__" entries of every file (the first file, in path order, wins on a repeated key).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  Checkpoint();
  void add_file(const std::filesystem::path& path);
  void finish();

  std::vector<std::unique_ptr<MappedFile>> files_;
  std::vector<TensorEntry> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Converts a F32, F16 (IEEE 754 binary16) or BF16 (bfloat16: the upper half of a binary32) tensor
// to float32 exactly, subnormals, infinities and NaN payloads included. `out` must hold
// element_count() floats. Any other dtype throws realizar::Error naming the tensor and dtype.
void to_float32(const TensorEntry& tensor, float* out);

}  // namespace realizar::safetensors
