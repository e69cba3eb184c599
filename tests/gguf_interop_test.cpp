// Interoperability with the independent gguf-py package (PyPI `gguf`), through the helper script
// tests/python/gguf_interop.py: files we write are read identically by gguf-py's GGUFReader, and
// files gguf-py's GGUFWriter writes are read identically by our reader. Both sides are compared
// as JSON in the helper's schema (typed values, strings as hex, tensors with their bytes).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>

#include "realizar/gguf.h"
#include "test_support.h"

namespace realizar::gguf {
namespace {

using nlohmann::json;
using realizar::testing::source_dir;
using realizar::testing::TempDir;

// Runs the helper script and returns its standard output; fails the test on a non-zero exit.
std::string run_helper(const std::string& command, const std::filesystem::path& file) {
  const std::string line = "python3 '" + (source_dir() / "tests/python/gguf_interop.py").string() +
                           "' " + command + " '" + file.string() + "'";
  std::FILE* pipe = ::popen(line.c_str(), "r");
  if (pipe == nullptr) throw std::runtime_error("cannot run " + line);
  std::string out;
  char buffer[65536];
  size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) out.append(buffer, n);
  const int status = ::pclose(pipe);
  EXPECT_EQ(status, 0) << line;
  return out;
}

std::string hex(const uint8_t* bytes, size_t size) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string text;
  for (size_t i = 0; i < size; ++i) {
    text += kDigits[bytes[i] >> 4];
    text += kDigits[bytes[i] & 15];
  }
  return text;
}

json typed_json(const Value& value) {
  const std::string type(value_type_name(value.type()));
  if (value.type() == ValueType::STRING) {
    const std::string& text = value.as<std::string>();
    return {{"type", type}, {"value", hex(reinterpret_cast<const uint8_t*>(text.data()), text.size())}};
  }
  if (value.type() == ValueType::ARRAY) {
    json elements = json::array();
    for (const Value& element : value.array().elements) elements.push_back(typed_json(element));
    return {{"type", type},
            {"element_type", value_type_name(value.array().element_type)},
            {"elements", elements}};
  }
  return {{"type", type}, {"value", value.to_json()}};
}

json metadata_json(const std::vector<std::pair<std::string, Value>>& metadata) {
  json list = json::array();
  for (const auto& [key, value] : metadata) {
    json entry = typed_json(value);
    entry["key"] = key;
    list.push_back(entry);
  }
  return list;
}

json tensor_json(const TensorInfo& info, const uint8_t* data) {
  return {{"name", info.name},
          {"type", tensor_type_name(info.type)},
          {"dims", info.dims},
          {"data", hex(data, info.n_bytes)}};
}

// Our reader's view of a file, in the helper's schema.
json file_json(const File& file) {
  json tensors = json::array();
  for (const TensorInfo& info : file.tensors()) tensors.push_back(tensor_json(info, file.tensor_data(info)));
  return {{"version", file.version()},
          {"alignment", file.alignment()},
          {"metadata", metadata_json(file.metadata())},
          {"tensors", tensors}};
}

struct Case {
  uint32_t version;
  uint32_t alignment;  // 0: no general.alignment key
};

class GgufInterop : public ::testing::TestWithParam<Case> {};

TEST_P(GgufInterop, FilesWeWriteAreReadIdenticallyByGgufPy) {
  TempDir dir;
  const auto path = dir / "ours.gguf";
  std::vector<std::pair<std::string, Value>> metadata = {
      {"general.architecture", Value("llama")},
      {"t.uint8", Value(uint8_t{200})},
      {"t.int8", Value(int8_t{-5})},
      {"t.uint16", Value(uint16_t{65535})},
      {"t.int16", Value(int16_t{-32768})},
      {"t.uint32", Value(uint32_t{4000000000u})},
      {"t.int32", Value(int32_t{-7})},
      {"t.float32", Value(0.1f)},
      {"t.bool", Value(true)},
      {"t.string", Value("▁wörld 🙂")},
      {"t.string.invalid_utf8", Value(std::string("\xff\xc3("))},
      {"t.uint64", Value(std::numeric_limits<uint64_t>::max())},
      {"t.int64", Value(std::numeric_limits<int64_t>::min())},
      {"t.float64", Value(1e-300)},
      {"t.array.string", Value::array(std::vector<std::string>{"<s>", "", "é"})},
      {"t.array.bool", Value::array(std::vector<bool>{false, true})},
      {"t.array.uint64", Value::array(std::vector<uint64_t>{1, 1ull << 63})},
      {"t.array.float32", Value::array(std::vector<float>{0.25f, -3.0f})},
      {"t.array.empty", Value::array(ValueType::UINT16, {})},
      {"t.array.nested", Value::array(ValueType::ARRAY,
                                      {Value::array(std::vector<int16_t>{1, -2}),
                                       Value::array(std::vector<std::string>{"x", "y"})})},
  };
  if (GetParam().alignment != 0) {
    metadata.emplace_back("general.alignment", Value(GetParam().alignment));
  }
  struct Spec {
    std::string name;
    TensorType type;
    std::vector<uint64_t> dims;
  };
  const std::vector<Spec> specs = {{"f32", TensorType::F32, {5, 3}},
                                   {"f16", TensorType::F16, {7}},
                                   {"q8_0", TensorType::Q8_0, {64, 2}},
                                   {"q4_k", TensorType::Q4_K, {256, 2, 1}},
                                   {"q6_k", TensorType::Q6_K, {256}}};
  Writer writer(path, GetParam().version);
  for (const auto& [key, value] : metadata) writer.set(key, value);
  for (const Spec& spec : specs) writer.add_tensor(spec.name, spec.type, spec.dims);
  writer.write_header();
  std::mt19937 rng(42);
  json expected_tensors = json::array();
  for (const Spec& spec : specs) {
    uint64_t rows = 1;
    for (size_t d = 1; d < spec.dims.size(); ++d) rows *= spec.dims[d];
    std::vector<uint8_t> bytes(row_bytes(spec.type, spec.dims[0]) * rows);
    for (uint8_t& b : bytes) b = static_cast<uint8_t>(rng());
    writer.write_tensor(spec.name, bytes);
    expected_tensors.push_back({{"name", spec.name},
                                {"type", tensor_type_name(spec.type)},
                                {"dims", spec.dims},
                                {"data", hex(bytes.data(), bytes.size())}});
  }
  writer.finish();

  const json theirs = json::parse(run_helper("dump", path));
  EXPECT_EQ(theirs["version"], GetParam().version);
  EXPECT_EQ(theirs["alignment"], GetParam().alignment == 0 ? 32 : GetParam().alignment);
  EXPECT_EQ(theirs["metadata"], metadata_json(metadata));
  EXPECT_EQ(theirs["tensors"], expected_tensors);
}

INSTANTIATE_TEST_SUITE_P(Versions, GgufInterop,
                         ::testing::Values(Case{3, 0}, Case{3, 64}, Case{2, 8}, Case{3, 1}),
                         [](const auto& info) {
                           return "v" + std::to_string(info.param.version) + "_align" +
                                  std::to_string(info.param.alignment);
                         });

TEST(GgufInteropReader, FilesGgufPyWritesAreReadIdentically) {
  TempDir dir;
  const auto path = dir / "theirs.gguf";
  run_helper("write", path);
  const File file = File::open(path);
  const json theirs = json::parse(run_helper("dump", path));
  const json ours = file_json(file);
  EXPECT_EQ(ours["metadata"], theirs["metadata"]);
  EXPECT_EQ(ours["tensors"], theirs["tensors"]);
  EXPECT_EQ(ours, theirs);
  // The comparison above must not pass on two empty readings: spot-check what the script wrote.
  EXPECT_EQ(file.alignment(), 64u);
  EXPECT_EQ(file.get_string("t.string"), "héllo ▁wörld 🙂");
  EXPECT_EQ(file.get_int("t.int64"), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(file.find("t.array.nested")->array().elements[1].array().elements[0],
            Value(int32_t{3}));
  EXPECT_EQ(file.tensor("f32").dims, (std::vector<uint64_t>{5, 3}));
  EXPECT_EQ(file.tensor("q4_k").dims, (std::vector<uint64_t>{256, 3}));
  EXPECT_EQ(file.tensor("q4_k").n_bytes, 3u * 144u);
}

}  // namespace
}  // namespace realizar::gguf
