#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>

#include "realizar/error.h"
#include "realizar/safetensors.h"
#include "safetensors/dtype.h"
#include "safetensors/mapped_file.h"

namespace realizar::safetensors {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// The reference implementation refuses headers above 100 MB (safetensors MAX_HEADER_SIZE).
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr std::string_view kIndexName = "model.safetensors.index.json";

struct ParsedHeader {
  std::vector<TensorEntry> tensors;
  std::map<std::string, std::string> metadata;
};

json parse_json(std::string_view text, const fs::path& path, std::string_view what) {
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    fail("{}: {} is not valid JSON: {}", path.string(), what, e.what());
  }
}

std::vector<int64_t> parse_shape(const json& shape, const fs::path& path, const std::string& name) {
  if (!shape.is_array()) fail("{}: tensor '{}': \"shape\" must be an array", path.string(), name);
  std::vector<int64_t> dims;
  for (const json& dim : shape) {
    if (!dim.is_number_unsigned()) fail("{}: tensor '{}': shape {} has a non-integer or negative dimension", path.string(), name, shape.dump());
    dims.push_back(dim.get<int64_t>());
  }
  return dims;
}

// Byte size that shape * dtype needs, or nullopt on overflow.
std::optional<uint64_t> needed_bytes(const std::vector<int64_t>& shape, DType dtype) {
  uint64_t bytes = dtype_size(dtype);
  for (int64_t dim : shape) {
    if (dim != 0 && bytes > std::numeric_limits<uint64_t>::max() / static_cast<uint64_t>(dim)) return std::nullopt;
    bytes *= static_cast<uint64_t>(dim);
  }
  return bytes;
}

TensorEntry parse_tensor(const std::string& name, const json& info, std::span<const std::byte> data_buffer,
                         const fs::path& path) {
  if (!info.is_object() || !info.contains("dtype") || !info.contains("shape") || !info.contains("data_offsets"))
    fail("{}: tensor '{}' needs \"dtype\", \"shape\" and \"data_offsets\"", path.string(), name);
  const json& dtype_json = info["dtype"];
  const std::string dtype_text = dtype_json.is_string() ? dtype_json.get<std::string>() : dtype_json.dump();
  const std::optional<DType> dtype = dtype_from_name(dtype_text);
  if (!dtype) fail("{}: tensor '{}' has unknown dtype '{}'", path.string(), name, dtype_text);
  std::vector<int64_t> shape = parse_shape(info["shape"], path, name);

  const json& offsets = info["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() || !offsets[1].is_number_unsigned())
    fail("{}: tensor '{}': \"data_offsets\" must be two non-negative integers, got {}", path.string(), name, offsets.dump());
  const uint64_t begin = offsets[0].get<uint64_t>();
  const uint64_t end = offsets[1].get<uint64_t>();
  if (begin > end) fail("{}: tensor '{}': data_offsets begin {} > end {}", path.string(), name, begin, end);
  if (end > data_buffer.size())
    fail("{}: tensor '{}': data_offsets [{}, {}] run past the data buffer of {} bytes", path.string(), name, begin, end,
         data_buffer.size());
  const std::optional<uint64_t> bytes = needed_bytes(shape, *dtype);
  if (!bytes || *bytes != end - begin)
    fail("{}: tensor '{}': {} bytes of data but shape {} of {} needs {}", path.string(), name, end - begin,
         info["shape"].dump(), dtype_text, bytes ? std::to_string(*bytes) : "more than 2^64");
  return {name, *dtype, std::move(shape), data_buffer.subspan(begin, end - begin), path};
}

void check_no_overlap(std::vector<TensorEntry> tensors, const fs::path& path) {
  std::erase_if(tensors, [](const TensorEntry& t) { return t.data.empty(); });
  std::sort(tensors.begin(), tensors.end(), [](const TensorEntry& a, const TensorEntry& b) { return a.data.data() < b.data.data(); });
  for (size_t i = 1; i < tensors.size(); ++i) {
    const TensorEntry& previous = tensors[i - 1];
    if (tensors[i].data.data() < previous.data.data() + previous.data.size())
      fail("{}: tensors '{}' and '{}' overlap in the data buffer", path.string(), previous.name, tensors[i].name);
  }
}

ParsedHeader parse_header(std::span<const std::byte> file, const fs::path& path) {
  if (file.size() < 8) fail("{}: {} bytes, too short for the 8-byte header length", path.string(), file.size());
  uint64_t header_bytes;
  std::memcpy(&header_bytes, file.data(), 8);  // little-endian, as the host (checked in dtype.cpp)
  if (header_bytes > kMaxHeaderBytes)
    fail("{}: header length {} exceeds the 100 MB limit (not a safetensors file?)", path.string(), header_bytes);
  if (header_bytes > file.size() - 8)
    fail("{}: header length {} runs past the end of the file ({} bytes)", path.string(), header_bytes, file.size());

  const std::string_view text(reinterpret_cast<const char*>(file.data()) + 8, header_bytes);
  const json header = parse_json(text, path, "the header");
  if (!header.is_object()) fail("{}: the header must be a JSON object", path.string());
  const std::span<const std::byte> data_buffer = file.subspan(8 + header_bytes);

  ParsedHeader parsed;
  for (const auto& [name, info] : header.items()) {
    if (name == "__metadata__") {
      if (!info.is_object()) fail("{}: \"__metadata__\" must be an object", path.string());
      for (const auto& [key, value] : info.items()) parsed.metadata[key] = value.is_string() ? value.get<std::string>() : value.dump();
    } else {
      parsed.tensors.push_back(parse_tensor(name, info, data_buffer, path));
    }
  }
  check_no_overlap(parsed.tensors, path);
  return parsed;
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open", path.string());
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

bool is_index_file(const fs::path& path) { return path.filename().string().ends_with(".index.json"); }

// The file to open for a directory: the index if present, else model.safetensors, else the only
// *.safetensors file.
fs::path resolve_directory(const fs::path& dir) {
  if (fs::exists(dir / kIndexName)) return dir / kIndexName;
  if (fs::exists(dir / "model.safetensors")) return dir / "model.safetensors";
  std::vector<fs::path> candidates;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() == ".safetensors") candidates.push_back(entry.path());
  }
  if (candidates.empty()) fail("{}: no .safetensors file in this directory", dir.string());
  if (candidates.size() > 1)
    fail("{}: {} .safetensors files but no {} saying how they fit together", dir.string(), candidates.size(), kIndexName);
  return candidates.front();
}

}  // namespace

Checkpoint::Checkpoint() = default;
Checkpoint::Checkpoint(Checkpoint&&) noexcept = default;
Checkpoint& Checkpoint::operator=(Checkpoint&&) noexcept = default;
Checkpoint::~Checkpoint() = default;

void Checkpoint::add_file(const fs::path& path) {
  files_.push_back(std::make_unique<MappedFile>(path));
  ParsedHeader parsed = parse_header(files_.back()->bytes(), path);
  for (TensorEntry& tensor : parsed.tensors) tensors_.push_back(std::move(tensor));
  metadata_.merge(parsed.metadata);  // keeps existing keys: the first file wins
}

// Sorts by name and rejects a name held by two files.
void Checkpoint::finish() {
  std::sort(tensors_.begin(), tensors_.end(), [](const TensorEntry& a, const TensorEntry& b) { return a.name < b.name; });
  const auto duplicate = std::adjacent_find(tensors_.begin(), tensors_.end(),
                                            [](const TensorEntry& a, const TensorEntry& b) { return a.name == b.name; });
  if (duplicate != tensors_.end())
    fail("tensor '{}' appears in both {} and {}", duplicate->name, duplicate->file.string(), std::next(duplicate)->file.string());
}

Checkpoint Checkpoint::open(const fs::path& dir_or_file) {
  if (!fs::exists(dir_or_file)) fail("{}: no such file or directory", dir_or_file.string());
  const fs::path path = fs::is_directory(dir_or_file) ? resolve_directory(dir_or_file) : dir_or_file;
  Checkpoint checkpoint;
  if (!is_index_file(path)) {
    checkpoint.add_file(path);
    checkpoint.finish();
    return checkpoint;
  }

  const json index = parse_json(read_text(path), path, "the index");
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
    fail("{}: no \"weight_map\" object", path.string());
  std::set<std::string> shard_names;
  for (const auto& [name, shard] : index["weight_map"].items()) {
    if (!shard.is_string()) fail("{}: weight_map entry '{}' must name a file", path.string(), name);
    shard_names.insert(shard.get<std::string>());
  }
  for (const std::string& shard : shard_names) {
    const fs::path shard_path = path.parent_path() / shard;
    if (!fs::exists(shard_path)) fail("{}: shard file {} is missing", path.string(), shard_path.string());
    checkpoint.add_file(shard_path);
  }
  checkpoint.finish();
  for (const auto& [name, shard] : index["weight_map"].items()) {
    const TensorEntry* tensor = checkpoint.find(name);
    const fs::path shard_path = path.parent_path() / shard.get<std::string>();
    if (tensor == nullptr || tensor->file != shard_path)
      fail("{}: tensor '{}' is listed in the index but absent from its shard {}", path.string(), name, shard_path.string());
  }
  return checkpoint;
}

const TensorEntry* Checkpoint::find(std::string_view name) const {
  const auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name,
                                   [](const TensorEntry& t, std::string_view n) { return t.name < n; });
  return it != tensors_.end() && it->name == name ? &*it : nullptr;
}

const TensorEntry& Checkpoint::tensor(std::string_view name) const {
  const TensorEntry* found = find(name);
  if (found == nullptr) {
    const std::string where = tensors_.empty() ? "an empty checkpoint" : tensors_.front().file.parent_path().string();
    fail("tensor '{}' not found in {}", name, where);
  }
  return *found;
}

}  // namespace realizar::safetensors
