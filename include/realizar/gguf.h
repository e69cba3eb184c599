// GGUF model files: a memory-mapped reader and a streaming writer.
// Source: the GGUF specification (ggml/docs/gguf.md). Versions 2 and 3 are supported, little-endian
// only. Layout: magic "GGUF", uint32 version, uint64 tensor count, uint64 metadata count, the
// metadata key/value pairs, the tensor infos, padding to the alignment, then the data section.
//
// Every malformed input is reported by throwing realizar::Error with a message of the form
//   "<path>: offset <byte offset>: <what is wrong>"
// (the offset is where the offending item starts). The reader never reads outside the mapping and
// never allocates more than a small multiple of the file's size.
//
// Choices where the specification is silent (and what llama.cpp does):
//  - n_dims must be 1..4 and every dimension must be non-zero and fit in int64 (ggml uses int64
//    dimensions; llama.cpp divides by ne[1..3] so a zero would crash it).
//  - the element count and byte size of a tensor must fit in int64.
//  - tensor data must be aligned, inside the file and not overlap another tensor's data; gaps are
//    allowed (llama.cpp requires tensors packed in order; gguf-py writes them that way).
//  - duplicate metadata keys and duplicate tensor names are errors (as in llama.cpp).
//  - strings are byte strings: invalid UTF-8 is accepted (llama.cpp accepts it; some vocabularies
//    contain such tokens). to_json() replaces invalid sequences with U+FFFD.
//  - `general.alignment` must be a UINT32 power of two (llama.cpp reads it with gguf_get_val_u32).
//  - arrays may nest at most 16 deep (a guard against stack exhaustion; real files nest 0 or 1).
//
// Split models (llama.cpp's gguf-split, and gguf-py's GGUFWriter with split_max_tensors/size):
// parts named NAME-00001-of-0000N.gguf ... NAME-0000N-of-0000N.gguf, each a complete GGUF file
// holding its own tensors' infos and data, with the keys split.no (0-based part number),
// split.count (N) and split.tensors.count (tensors in all parts); the other metadata is in the
// first part only.
// File::open of the first part opens every part and presents one tensor table, as llama.cpp's
// llama_model_loader does. Errors: a missing part, a part whose split.no / split.count disagree
// with its name, split.tensors.count not matching the tensors found, a tensor in two parts, and
// opening a part other than the first (the message names the first).
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "realizar/tensor_type.h"

namespace realizar::gguf {

// Metadata value types with their GGUF ids (`enum gguf_metadata_value_type`).
enum class ValueType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};

// "UINT8", "STRING", ... as the specification names them.
std::string_view value_type_name(ValueType type);

// True for the eight integer types.
bool is_integer_type(ValueType type);

// The value type of a GGUF id; std::nullopt for ids the specification does not define.
std::optional<ValueType> value_type_from_id(uint32_t id);

constexpr uint64_t kDefaultAlignment = 32;
constexpr uint32_t kMaxDims = 4;          // GGML_MAX_DIMS
constexpr uint32_t kMaxArrayNesting = 16;  // arrays inside arrays, see above

class Value;

// The C++ types that hold the scalar value types (std::string for STRING).
template <typename T>
concept ScalarValue =
    std::is_same_v<T, uint8_t> || std::is_same_v<T, int8_t> || std::is_same_v<T, uint16_t> ||
    std::is_same_v<T, int16_t> || std::is_same_v<T, uint32_t> || std::is_same_v<T, int32_t> ||
    std::is_same_v<T, float> || std::is_same_v<T, bool> || std::is_same_v<T, std::string> ||
    std::is_same_v<T, uint64_t> || std::is_same_v<T, int64_t> || std::is_same_v<T, double>;

// An array value: every element has type `element_type` (arrays of arrays allowed, and then the
// inner arrays may have different element types and lengths, as the format allows).
struct Array {
  ValueType element_type = ValueType::UINT8;
  std::vector<Value> elements;
  bool operator==(const Array& other) const;  // same element type and equal elements
};

// One metadata value of any GGUF type.
class Value {
 public:
  using Storage = std::variant<uint8_t, int8_t, uint16_t, int16_t, uint32_t, int32_t, float, bool,
                               std::string, Array, uint64_t, int64_t, double>;

  // A scalar of exactly type T: Value(uint32_t{4}) is UINT32, Value(7) is INT32 (int).
  template <ScalarValue T>
  explicit Value(T value) : storage_(std::move(value)) {}
  explicit Value(const char* text) : storage_(std::string(text)) {}
  explicit Value(std::string_view text) : storage_(std::string(text)) {}

  // An array whose elements all have type `element_type` (throws realizar::Error otherwise).
  static Value array(ValueType element_type, std::vector<Value> elements);
  // An array of scalars: Value::array(std::vector<std::string>{...}), of float, of int32_t...
  template <ScalarValue T>
  static Value array(const std::vector<T>& elements);

  ValueType type() const { return static_cast<ValueType>(storage_.index()); }

  // The value as T, which must be the exact held type; throws realizar::Error naming both types.
  template <typename T>
  const T& as() const;
  const Array& array() const { return as<Array>(); }

  // Display form: numbers, quoted strings, [a, b, ...]; arrays longer than `max_elements` show
  // their first elements and "... (N elements)".
  std::string to_string(size_t max_elements = SIZE_MAX) const;
  // JSON form: numbers, strings (invalid UTF-8 replaced by U+FFFD), booleans, nested JSON arrays.
  nlohmann::json to_json() const;

  bool operator==(const Value& other) const = default;

 private:
  explicit Value(Array array) : storage_(std::move(array)) {}
  Storage storage_;
};

// One tensor's description from the header. dims[0] is ne[0], the innermost (contiguous)
// dimension, as in ggml; GGUF stores the dims in this order.
struct TensorInfo {
  std::string name;
  TensorType type = TensorType::F32;
  std::vector<uint64_t> dims;
  uint64_t offset = 0;      // bytes from the start of the data section
  uint64_t n_elements = 0;  // product of dims
  uint64_t n_bytes = 0;     // row_bytes(type, dims[0]) * dims[1] * ... (no padding)
  uint64_t header_offset = 0;  // where this tensor info starts in its file (for messages)
  uint32_t part = 0;           // index into File::parts() of the file holding it (0 unless split)
};

// One file of a model: the only one, or one part of a split model.
struct FilePart {
  std::filesystem::path path;
  uint64_t size = 0;         // bytes
  uint64_t data_offset = 0;  // start of this file's data section (tensor offsets count from it)
};

// A GGUF model opened read-only and memory-mapped: one file, or every part of a split model (see
// the top of this file). Movable, not copyable; unmaps on destruction. Tensor data pointers stay
// valid while the File lives.
class File {
 public:
  // Maps and validates the whole header of `path`, and of the other parts when it is the first
  // part of a split model (throws realizar::Error, see the top of this file).
  static File open(const std::filesystem::path& path);

  File(File&& other) noexcept;
  File& operator=(File&& other) noexcept;
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  ~File();

  const std::filesystem::path& path() const { return parts_.front().path; }  // the first part
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }  // of the first part
  uint64_t file_size() const;                        // bytes of all parts together
  uint64_t data_offset() const { return parts_.front().data_offset; }  // of the first part
  // The files in part order: one unless the model is split.
  const std::vector<FilePart>& parts() const { return parts_; }

  // All key/value pairs in file order (of the first part, which holds them for a split model).
  const std::vector<std::pair<std::string, Value>>& metadata() const { return metadata_; }
  const Value* find(std::string_view key) const;  // nullptr when absent

  // Typed lookups. They throw realizar::Error naming the file and key when the key is missing or
  // its value has another type. get_uint accepts any integer type holding a value >= 0, get_int
  // any integer type whose value fits in int64, get_float FLOAT32 or FLOAT64.
  std::string get_string(std::string_view key) const;
  uint64_t get_uint(std::string_view key) const;
  int64_t get_int(std::string_view key) const;
  double get_float(std::string_view key) const;
  bool get_bool(std::string_view key) const;
  // The same with a default for a missing key (a present key of the wrong type still throws).
  std::string get_string_or(std::string_view key, std::string_view fallback) const;
  uint64_t get_uint_or(std::string_view key, uint64_t fallback) const;
  int64_t get_int_or(std::string_view key, int64_t fallback) const;
  double get_float_or(std::string_view key, double fallback) const;
  bool get_bool_or(std::string_view key, bool fallback) const;
  // Arrays: of STRING; of FLOAT32/FLOAT64; of any integer type fitting in int64.
  std::vector<std::string> get_string_array(std::string_view key) const;
  std::vector<float> get_float_array(std::string_view key) const;
  std::vector<int64_t> get_int_array(std::string_view key) const;

  // Tensors in file order (part by part for a split model).
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find_tensor(std::string_view name) const;  // nullptr when absent
  const TensorInfo& tensor(std::string_view name) const;       // throws naming the tensor
  // Start of the tensor's bytes in its part's mapping (n_bytes long).
  const uint8_t* tensor_data(const TensorInfo& info) const;

 private:
  struct Mapping {
    const uint8_t* bytes = nullptr;
    uint64_t size = 0;
  };

  File() = default;
  static File open_one(const std::filesystem::path& path);  // a single file, split keys ignored
  void open_other_parts();  // when this is the first part of a split model (split.cpp)
  void adopt_part(File part, uint32_t index);
  void unmap();
  const Value& require(std::string_view key) const;
  [[noreturn]] void fail_key(std::string_view key, const Value& value,
                             std::string_view expected) const;

  std::vector<FilePart> parts_;   // never empty once opened
  std::vector<Mapping> mappings_;  // one per part
  uint32_t version_ = 0;
  uint64_t alignment_ = kDefaultAlignment;
  std::vector<std::pair<std::string, Value>> metadata_;
  std::map<std::string, size_t, std::less<>> metadata_index_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;

  friend class Parser;
};

// The name of part `index` (0-based) of a model split in `count` parts:
// "{prefix}-{index + 1:05}-of-{count:05}.gguf" (llama.cpp's llama_split_path).
std::string split_part_path(std::string_view prefix, uint64_t index, uint64_t count);

// Writes a GGUF file in one pass without holding tensor data in memory:
//   Writer w(path);  w.set(...)...;  w.add_tensor(...)...;  w.write_header();
//   for each tensor in declaration order: w.write_tensor(name, bytes)
//     (or begin_tensor(name), append(chunk)..., end_tensor());
//   w.finish();
// Tensor data offsets are assigned in declaration order, each padded to the alignment
// (`general.alignment` when set, else 32). Calls out of this order, a wrong tensor name or byte
// count, or finishing before all data is written throw realizar::Error. A Writer destroyed before
// finish() removes the incomplete file.
class Writer {
 public:
  explicit Writer(std::filesystem::path path, uint32_t version = 3);
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;
  ~Writer();

  const std::filesystem::path& path() const { return path_; }

  // Adds a key in insertion order; a duplicate key throws. `general.alignment` must be a UINT32
  // power of two.
  void set(std::string key, Value value);
  // Declares a tensor; dims as ne[0] (innermost) first, 1..4 of them, ne[0] a multiple of the
  // type's block size.
  void add_tensor(std::string name, TensorType type, std::vector<uint64_t> dims);

  void write_header();
  void write_tensor(std::string_view name, std::span<const uint8_t> data);
  void begin_tensor(std::string_view name);
  void append(std::span<const uint8_t> chunk);
  void end_tensor();
  void finish();

 private:
  enum class Stage { kDeclaring, kWritingData, kInTensor, kFinished };
  void require_stage(Stage stage, std::string_view action) const;
  void write_bytes(const void* data, size_t size);
  void write_padding();

  std::filesystem::path path_;
  uint32_t version_;
  std::FILE* out_ = nullptr;
  Stage stage_ = Stage::kDeclaring;
  uint64_t alignment_ = kDefaultAlignment;
  std::vector<std::pair<std::string, Value>> metadata_;
  std::map<std::string, size_t, std::less<>> metadata_index_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
  uint64_t written_ = 0;         // bytes written to the file so far
  size_t next_tensor_ = 0;       // index of the tensor being written or next to write
  uint64_t tensor_written_ = 0;  // bytes of the current tensor written so far
};

// ---- template definitions ------------------------------------------------------------------------

namespace detail {
// The variant's alternatives are in GGUF id order, so an alternative's index is its type id.
template <typename T, size_t I = 0>
constexpr ValueType value_type_of() {
  if constexpr (std::is_same_v<T, std::variant_alternative_t<I, Value::Storage>>) {
    return static_cast<ValueType>(I);
  } else {
    return value_type_of<T, I + 1>();
  }
}
[[noreturn]] void fail_wrong_type(ValueType actual, ValueType expected);
}  // namespace detail

template <typename T>
const T& Value::as() const {
  if (const T* held = std::get_if<T>(&storage_)) return *held;
  detail::fail_wrong_type(type(), detail::value_type_of<T>());
}

template <ScalarValue T>
Value Value::array(const std::vector<T>& elements) {
  Array result;
  result.element_type = detail::value_type_of<T>();
  result.elements.reserve(elements.size());
  for (const T& element : elements) result.elements.emplace_back(element);
  return Value(std::move(result));
}

}  // namespace realizar::gguf
