// Parsing and validation of a mapped GGUF header (see the GGUF specification, ggml/docs/gguf.md).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include "gguf/cursor.h"
#include "realizar/error.h"
#include "realizar/gguf.h"

namespace realizar::gguf {
namespace {

constexpr uint64_t kInt64Max = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());

// Smallest encoding of a metadata pair (empty key, type, one byte) and of a tensor info (empty
// name, n_dims, one dim, type, offset): bounds on the counts a file of a given size can hold.
constexpr uint64_t kMinMetadataBytes = 8 + 4 + 1;
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;

// Encoded size of the smallest value of a type: bounds an array's count by the bytes left.
uint64_t min_encoded_size(ValueType type) {
  switch (type) {
    case ValueType::UINT8: case ValueType::INT8: case ValueType::BOOL: return 1;
    case ValueType::UINT16: case ValueType::INT16: return 2;
    case ValueType::UINT32: case ValueType::INT32: case ValueType::FLOAT32: return 4;
    case ValueType::UINT64: case ValueType::INT64: case ValueType::FLOAT64: return 8;
    case ValueType::STRING: return 8;      // the length
    case ValueType::ARRAY: return 4 + 8;  // element type and count
  }
  return 1;
}

struct MappedBytes {
  const uint8_t* bytes = nullptr;
  uint64_t size = 0;
};

MappedBytes map_file(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("{}: cannot open: {}", path.string(), std::strerror(errno));
  struct stat info {};
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    ::close(fd);
    fail("{}: not a regular file", path.string());
  }
  MappedBytes mapped;
  mapped.size = static_cast<uint64_t>(info.st_size);
  if (mapped.size > 0) {
    void* address = ::mmap(nullptr, mapped.size, PROT_READ, MAP_PRIVATE, fd, 0);
    const int map_errno = errno;
    ::close(fd);
    if (address == MAP_FAILED) fail("{}: cannot map: {}", path.string(), std::strerror(map_errno));
    mapped.bytes = static_cast<const uint8_t*>(address);
  } else {
    ::close(fd);
  }
  return mapped;
}

}  // namespace

// Fills a File from its mapped bytes; each step validates what it reads.
class Parser {
 public:
  // Parses the file's only part (File::open_one).
  explicit Parser(File& file)
      : file_(file),
        part_(file.parts_.front()),
        cursor_(part_.path.string(), file.mappings_.front().bytes, part_.size) {}

  void parse() {
    read_preamble();
    read_metadata();
    read_alignment();
    read_tensor_infos();
    part_.data_offset = align_up(cursor_.offset());
    check_tensor_data();
  }

 private:
  void read_preamble() {
    const auto magic = cursor_.read<uint32_t>("magic");
    if (std::memcmp(&magic, "GGUF", 4) != 0) {
      cursor_.fail_at(0, "not a GGUF file (magic is 0x{:08x}, expected \"GGUF\")", magic);
    }
    const auto version = cursor_.read<uint32_t>("version");
    if (version != 0 && (version & 0xFFFF) == 0) {
      cursor_.fail_at(4, "big-endian GGUF files are not supported (version field 0x{:08x})",
                      version);
    }
    if (version != 2 && version != 3) {
      cursor_.fail_at(4, "GGUF version {} is not supported (only versions 2 and 3)", version);
    }
    file_.version_ = version;
    tensor_count_ = read_count("tensor count", kMinTensorInfoBytes);
    metadata_count_ = read_count("metadata count", kMinMetadataBytes);
  }

  uint64_t read_count(const char* what, uint64_t min_item_bytes) {
    const uint64_t start = cursor_.offset();
    const auto count = cursor_.read<uint64_t>(what);
    if (count > cursor_.remaining() / min_item_bytes) {
      cursor_.fail_at(start, "{} {} exceeds what the remaining {} bytes could hold", what, count,
                      cursor_.remaining());
    }
    return count;
  }

  void read_metadata() {
    for (uint64_t i = 0; i < metadata_count_; ++i) {
      const uint64_t start = cursor_.offset();
      cursor_.set_context(fmt::format("metadata pair {}", i));
      std::string key = cursor_.read_string("key");
      cursor_.set_context(fmt::format("metadata key '{}'", key));
      if (file_.metadata_index_.contains(key)) cursor_.fail_at(start, "duplicate metadata key");
      const uint64_t type_offset = cursor_.offset();
      Value value = read_value(read_type(type_offset, cursor_.read<uint32_t>("value type")), 0);
      file_.metadata_index_.emplace(key, file_.metadata_.size());
      metadata_offsets_.push_back(start);
      file_.metadata_.emplace_back(std::move(key), std::move(value));
    }
    cursor_.set_context("");
  }

  ValueType read_type(uint64_t offset, uint32_t id) {
    const auto type = value_type_from_id(id);
    if (!type) cursor_.fail_at(offset, "unknown value type {}", id);
    return *type;
  }

  Value read_value(ValueType type, uint32_t depth) {
    switch (type) {
      case ValueType::UINT8: return Value(cursor_.read<uint8_t>("UINT8 value"));
      case ValueType::INT8: return Value(cursor_.read<int8_t>("INT8 value"));
      case ValueType::UINT16: return Value(cursor_.read<uint16_t>("UINT16 value"));
      case ValueType::INT16: return Value(cursor_.read<int16_t>("INT16 value"));
      case ValueType::UINT32: return Value(cursor_.read<uint32_t>("UINT32 value"));
      case ValueType::INT32: return Value(cursor_.read<int32_t>("INT32 value"));
      case ValueType::FLOAT32: return Value(cursor_.read<float>("FLOAT32 value"));
      case ValueType::UINT64: return Value(cursor_.read<uint64_t>("UINT64 value"));
      case ValueType::INT64: return Value(cursor_.read<int64_t>("INT64 value"));
      case ValueType::FLOAT64: return Value(cursor_.read<double>("FLOAT64 value"));
      case ValueType::STRING: return Value(cursor_.read_string("string"));
      case ValueType::BOOL: return read_bool();
      case ValueType::ARRAY: return read_array(depth);
    }
    cursor_.fail_at(cursor_.offset(), "unknown value type {}", static_cast<uint32_t>(type));
  }

  Value read_bool() {
    const uint64_t start = cursor_.offset();
    const auto byte = cursor_.read<uint8_t>("BOOL value");
    if (byte > 1) cursor_.fail_at(start, "invalid BOOL byte {} (must be 0 or 1)", byte);
    return Value(byte == 1);
  }

  Value read_array(uint32_t depth) {
    const uint64_t start = cursor_.offset();
    if (depth + 1 > kMaxArrayNesting) {
      cursor_.fail_at(start, "arrays nested more than {} deep", kMaxArrayNesting);
    }
    const ValueType element_type = read_type(start, cursor_.read<uint32_t>("array element type"));
    const uint64_t count_offset = cursor_.offset();
    const auto count = cursor_.read<uint64_t>("array length");
    if (count > cursor_.remaining() / min_encoded_size(element_type)) {
      cursor_.fail_at(count_offset, "array of {} {} elements exceeds the remaining {} bytes", count,
                      value_type_name(element_type), cursor_.remaining());
    }
    std::vector<Value> elements;
    elements.reserve(count);
    for (uint64_t i = 0; i < count; ++i) elements.push_back(read_value(element_type, depth + 1));
    return Value::array(element_type, std::move(elements));
  }

  void read_alignment() {
    const auto found = file_.metadata_index_.find(std::string_view("general.alignment"));
    if (found == file_.metadata_index_.end()) return;
    const Value& value = file_.metadata_[found->second].second;
    const uint64_t offset = metadata_offsets_[found->second];
    if (value.type() != ValueType::UINT32) {
      cursor_.fail_at(offset, "general.alignment must be UINT32, not {}",
                      value_type_name(value.type()));
    }
    const uint32_t alignment = value.as<uint32_t>();
    if (alignment == 0 || (alignment & (alignment - 1)) != 0) {
      cursor_.fail_at(offset, "general.alignment {} is not a power of two", alignment);
    }
    file_.alignment_ = alignment;
  }

  void read_tensor_infos() {
    file_.tensors_.reserve(tensor_count_);
    for (uint64_t i = 0; i < tensor_count_; ++i) {
      TensorInfo info;
      info.header_offset = cursor_.offset();
      cursor_.set_context(fmt::format("tensor info {}", i));
      info.name = cursor_.read_string("tensor name");
      cursor_.set_context(fmt::format("tensor '{}'", info.name));
      if (file_.tensor_index_.contains(info.name)) {
        cursor_.fail_at(info.header_offset, "duplicate tensor name");
      }
      read_dims(info);
      const uint64_t type_offset = cursor_.offset();
      const auto type_id = cursor_.read<uint32_t>("tensor type");
      if (!tensor_type_info(type_id)) cursor_.fail_at(type_offset, "unknown tensor type {}", type_id);
      info.type = static_cast<TensorType>(type_id);
      info.offset = cursor_.read<uint64_t>("tensor data offset");
      compute_sizes(info);
      file_.tensor_index_.emplace(info.name, file_.tensors_.size());
      file_.tensors_.push_back(std::move(info));
    }
    cursor_.set_context("");
  }

  void read_dims(TensorInfo& info) {
    const uint64_t start = cursor_.offset();
    const auto n_dims = cursor_.read<uint32_t>("n_dims");
    if (n_dims == 0 || n_dims > kMaxDims) {
      cursor_.fail_at(start, "n_dims {} is out of range (1 to {})", n_dims, kMaxDims);
    }
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t dim_offset = cursor_.offset();
      const auto dim = cursor_.read<uint64_t>("dimension");
      if (dim == 0 || dim > kInt64Max) {
        cursor_.fail_at(dim_offset, "dimension ne[{}] = {} is out of range (1 to 2^63-1)", d, dim);
      }
      info.dims.push_back(dim);
    }
  }

  // n_elements and n_bytes, both required to fit in int64 (ggml's int64_t counts).
  void compute_sizes(TensorInfo& info) {
    uint64_t elements = 1;
    for (uint64_t dim : info.dims) {
      if (elements > kInt64Max / dim) {
        cursor_.fail_at(info.header_offset, "element count of dims {} overflows int64",
                        fmt::join(info.dims, " x "));
      }
      elements *= dim;
    }
    const TensorTypeInfo layout = *tensor_type_info(static_cast<uint32_t>(info.type));
    if (info.dims[0] % layout.block_size != 0) {
      cursor_.fail_at(info.header_offset, "row length ne[0] = {} is not a multiple of the {} block size {}",
                      info.dims[0], layout.name, layout.block_size);
    }
    const uint64_t blocks = elements / layout.block_size;
    if (blocks > kInt64Max / layout.block_bytes) {
      cursor_.fail_at(info.header_offset, "byte size of dims {} of {} overflows int64",
                      fmt::join(info.dims, " x "), layout.name);
    }
    info.n_elements = elements;
    info.n_bytes = blocks * layout.block_bytes;
  }

  uint64_t align_up(uint64_t offset) const {
    const uint64_t alignment = file_.alignment_;
    return offset + (alignment - offset % alignment) % alignment;
  }

  // Each tensor's data must be aligned, inside the file and disjoint from the others.
  void check_tensor_data() {
    const uint64_t data_offset = part_.data_offset;
    const uint64_t available = part_.size > data_offset ? part_.size - data_offset : 0;
    for (const TensorInfo& info : file_.tensors_) {
      cursor_.set_context(fmt::format("tensor '{}'", info.name));
      if (info.offset % file_.alignment_ != 0) {
        cursor_.fail_at(info.header_offset, "data offset {} is not a multiple of the alignment {}",
                        info.offset, file_.alignment_);
      }
      if (info.offset > available || info.n_bytes > available - info.offset) {
        // 128-bit so that an offset near 2^64 prints as it is instead of wrapping around.
        const auto begin = static_cast<unsigned __int128>(data_offset) + info.offset;
        cursor_.fail_at(info.header_offset,
                        "data [{}, {}) extends past the end of the file (size {})", begin,
                        begin + info.n_bytes, part_.size);
      }
    }
    std::vector<const TensorInfo*> by_offset;
    for (const TensorInfo& info : file_.tensors_) by_offset.push_back(&info);
    std::sort(by_offset.begin(), by_offset.end(),
              [](const TensorInfo* a, const TensorInfo* b) { return a->offset < b->offset; });
    for (size_t i = 1; i < by_offset.size(); ++i) {
      const TensorInfo& previous = *by_offset[i - 1];
      const TensorInfo& current = *by_offset[i];
      if (previous.offset + previous.n_bytes > current.offset) {
        cursor_.set_context(fmt::format("tensor '{}'", current.name));
        cursor_.fail_at(current.header_offset,
                        "data [{}, {}) overlaps the data of tensor '{}' [{}, {})",
                        data_offset + current.offset, data_offset + current.offset + current.n_bytes,
                        previous.name, data_offset + previous.offset,
                        data_offset + previous.offset + previous.n_bytes);
      }
    }
    cursor_.set_context("");
  }

  File& file_;
  FilePart& part_;
  Cursor cursor_;
  uint64_t tensor_count_ = 0;
  uint64_t metadata_count_ = 0;
  std::vector<uint64_t> metadata_offsets_;  // file offset of each metadata pair
};

File File::open_one(const std::filesystem::path& path) {
  File file;
  const MappedBytes mapped = map_file(path);
  file.parts_.push_back(FilePart{path, mapped.size, 0});
  file.mappings_.push_back(Mapping{mapped.bytes, mapped.size});
  Parser(file).parse();  // on error, `file` unmaps as the exception leaves
  return file;
}

void File::unmap() {
  for (const Mapping& mapping : mappings_) {
    if (mapping.bytes != nullptr) ::munmap(const_cast<uint8_t*>(mapping.bytes), mapping.size);
  }
  mappings_.clear();
}

}  // namespace realizar::gguf
