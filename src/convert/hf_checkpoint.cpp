#include "convert/hf_checkpoint.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "realizar/error.h"

namespace realizar::convert_detail {
namespace {

using nlohmann::json;

TensorType dtype_of(const std::string& dtype, const std::filesystem::path& file,
                    const std::string& name) {
  if (dtype == "F32") return TensorType::F32;
  if (dtype == "F16") return TensorType::F16;
  if (dtype == "BF16") return TensorType::BF16;
  fail("{}: tensor {} has dtype {} (only F32, F16 and BF16 are converted)", file.string(), name,
       dtype);
}

// Shard file names: from the index's weight_map, else the single model.safetensors.
std::vector<std::filesystem::path> shard_files(const std::filesystem::path& dir) {
  const auto index = dir / "model.safetensors.index.json";
  if (std::filesystem::exists(index)) {
    std::ifstream in(index);
    std::set<std::string> names;
    try {
      for (const auto& [tensor, file] : json::parse(in).at("weight_map").items()) {
        names.insert(file.get<std::string>());
      }
    } catch (const json::exception& e) {
      fail("{}: {}", index.string(), e.what());
    }
    std::vector<std::filesystem::path> files;
    for (const std::string& name : names) files.push_back(dir / name);
    return files;
  }
  const auto single = dir / "model.safetensors";
  if (!std::filesystem::exists(single)) {
    fail("{}: no model.safetensors or model.safetensors.index.json", dir.string());
  }
  return {single};
}

}  // namespace

struct Checkpoint::Mapping {
  void* address = MAP_FAILED;
  size_t size = 0;
  ~Mapping() {
    if (address != MAP_FAILED) munmap(address, size);
  }
};

Checkpoint::Checkpoint(Checkpoint&&) noexcept = default;
Checkpoint::~Checkpoint() = default;

Checkpoint Checkpoint::open(const std::filesystem::path& dir) {
  Checkpoint checkpoint;
  for (const std::filesystem::path& file : shard_files(dir)) {
    const int fd = ::open(file.c_str(), O_RDONLY);
    if (fd < 0) fail("{}: cannot open: {}", file.string(), std::strerror(errno));
    auto mapping = std::make_unique<Mapping>();
    mapping->size = std::filesystem::file_size(file);
    mapping->address = mapping->size ? mmap(nullptr, mapping->size, PROT_READ, MAP_PRIVATE, fd, 0)
                                     : MAP_FAILED;
    ::close(fd);
    if (mapping->address == MAP_FAILED) fail("{}: cannot map the file", file.string());
    const auto* bytes = static_cast<const uint8_t*>(mapping->address);
    uint64_t header_size = 0;
    if (mapping->size < 8) fail("{}: shorter than the safetensors header length", file.string());
    std::memcpy(&header_size, bytes, 8);
    if (header_size > mapping->size - 8) fail("{}: header runs past the end", file.string());
    const uint8_t* data = bytes + 8 + header_size;
    const uint64_t data_size = mapping->size - 8 - header_size;
    try {
      const json header = json::parse(bytes + 8, data);
      for (const auto& [name, entry] : header.items()) {
        if (name == "__metadata__") continue;
        CheckpointTensor t;
        t.type = dtype_of(entry.at("dtype").get<std::string>(), file, name);
        t.shape = entry.at("shape").get<std::vector<int64_t>>();
        const auto offsets = entry.at("data_offsets").get<std::vector<uint64_t>>();
        uint64_t elements = 1;
        for (int64_t d : t.shape) elements *= static_cast<uint64_t>(d);
        if (offsets.size() != 2 || offsets[1] > data_size || offsets[0] > offsets[1] ||
            offsets[1] - offsets[0] != elements * tensor_type_info(t.type).block_bytes) {
          fail("{}: tensor {} has bad data_offsets", file.string(), name);
        }
        t.data = data + offsets[0];
        checkpoint.tensors_[name] = std::move(t);
      }
    } catch (const json::exception& e) {
      fail("{}: bad safetensors header: {}", file.string(), e.what());
    }
    checkpoint.mappings_.push_back(std::move(mapping));
  }
  return checkpoint;
}

const CheckpointTensor* Checkpoint::find(const std::string& name) const {
  const auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

}  // namespace realizar::convert_detail
