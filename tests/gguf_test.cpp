// GGUF reader and writer: round trips of every metadata type and several tensor types, the
// committed corpus of malformed files (tools/make_malformed_gguf.py), every truncation of a valid
// file, typed accessors and writer misuse. These suites also run under ASan/UBSan (tools/test.sh).
#include "realizar/gguf.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>

#include "realizar/error.h"
#include "test_support.h"

namespace realizar::gguf {
namespace {

using ::testing::HasSubstr;
using realizar::testing::read_file;
using realizar::testing::source_dir;
using realizar::testing::TempDir;
using realizar::testing::write_file;

std::vector<uint8_t> random_bytes(size_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> bytes(count);
  for (uint8_t& b : bytes) b = static_cast<uint8_t>(rng());
  return bytes;
}

using realizar::testing::error_of;

// Metadata with every value type, edge values, nested and empty arrays, odd strings.
std::vector<std::pair<std::string, Value>> every_type_metadata() {
  return {
      {"general.architecture", Value("llama")},
      {"t.uint8", Value(uint8_t{255})},
      {"t.int8", Value(int8_t{-128})},
      {"t.uint16", Value(uint16_t{65535})},
      {"t.int16", Value(int16_t{-32768})},
      {"t.uint32", Value(uint32_t{4294967295u})},
      {"t.int32", Value(int32_t{-2147483647 - 1})},
      {"t.float32", Value(1.5e-7f)},
      {"t.bool.true", Value(true)},
      {"t.bool.false", Value(false)},
      {"t.string.utf8", Value("héllo ▁wörld 🙂")},
      {"t.string.empty", Value("")},
      {"t.string.nul", Value(std::string("a\0b", 3))},
      {"t.string.invalid_utf8", Value(std::string("\xff\xfe<0x80>\xc3"))},
      {"t.uint64", Value(std::numeric_limits<uint64_t>::max())},
      {"t.int64", Value(std::numeric_limits<int64_t>::min())},
      {"t.float64", Value(-2.718281828459045)},
      {"t.array.uint8", Value::array(std::vector<uint8_t>{0, 1, 255})},
      {"t.array.int8", Value::array(std::vector<int8_t>{-1, 2})},
      {"t.array.uint16", Value::array(std::vector<uint16_t>{7})},
      {"t.array.int16", Value::array(std::vector<int16_t>{-7, 8})},
      {"t.array.uint32", Value::array(std::vector<uint32_t>{1, 2, 3})},
      {"t.array.int32", Value::array(std::vector<int32_t>{-1, 0, 1})},
      {"t.array.float32", Value::array(std::vector<float>{0.5f, -1.25f, 3e38f})},
      {"t.array.bool", Value::array(std::vector<bool>{true, false, true})},
      {"t.array.string", Value::array(std::vector<std::string>{"<s>", "", "▁the"})},
      {"t.array.uint64", Value::array(std::vector<uint64_t>{1ull << 40})},
      {"t.array.int64", Value::array(std::vector<int64_t>{-(1ll << 40)})},
      {"t.array.float64", Value::array(std::vector<double>{1e-300, 2.5})},
      {"t.array.empty", Value::array(ValueType::INT32, {})},
      {"t.array.nested",
       Value::array(ValueType::ARRAY, {Value::array(std::vector<int32_t>{1, 2}),
                                       Value::array(std::vector<std::string>{"x"}),
                                       Value::array(ValueType::FLOAT32, {})})},
      {"t.array.nested2",
       Value::array(ValueType::ARRAY,
                    {Value::array(ValueType::ARRAY, {Value::array(std::vector<uint8_t>{9})})})},
  };
}

struct TensorSpec {
  std::string name;
  TensorType type;
  std::vector<uint64_t> dims;
};

// Writes `tensors` with random bytes (seeded by index); returns the bytes written per tensor.
std::vector<std::vector<uint8_t>> write_model(const std::filesystem::path& path,
                                              const std::vector<std::pair<std::string, Value>>& kv,
                                              const std::vector<TensorSpec>& tensors,
                                              uint32_t version = 3) {
  Writer writer(path, version);
  for (const auto& [key, value] : kv) writer.set(key, value);
  for (const TensorSpec& t : tensors) writer.add_tensor(t.name, t.type, t.dims);
  writer.write_header();
  std::vector<std::vector<uint8_t>> data;
  for (size_t i = 0; i < tensors.size(); ++i) {
    uint64_t rows = 1;
    for (size_t d = 1; d < tensors[i].dims.size(); ++d) rows *= tensors[i].dims[d];
    data.push_back(random_bytes(row_bytes(tensors[i].type, tensors[i].dims[0]) * rows, i + 1));
    writer.write_tensor(tensors[i].name, data.back());
  }
  writer.finish();
  return data;
}

const std::vector<TensorSpec> kSeveralTypes = {
    {"token_embd.weight", TensorType::Q4_K, {512, 3}},
    {"blk.0.attn_q.weight", TensorType::Q8_0, {64, 5, 2}},
    {"blk.0.attn_norm.weight", TensorType::F32, {7}},
    {"blk.0.ffn_up.weight", TensorType::F16, {3, 5, 2, 2}},
    {"blk.0.ffn_down.weight", TensorType::Q6_K, {256}},
    {"output.weight", TensorType::BF16, {9, 1}},
    {"rope_freqs", TensorType::I32, {1}},
};

void expect_tensors_match(const File& file, const std::vector<TensorSpec>& specs,
                          const std::vector<std::vector<uint8_t>>& data) {
  ASSERT_EQ(file.tensors().size(), specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    const TensorInfo& info = file.tensor(specs[i].name);
    EXPECT_EQ(&info, &file.tensors()[i]);
    EXPECT_EQ(info.type, specs[i].type);
    EXPECT_EQ(info.dims, specs[i].dims);
    EXPECT_EQ(info.n_bytes, data[i].size());
    EXPECT_EQ(info.offset % file.alignment(), 0u);
    EXPECT_EQ((file.data_offset() + info.offset) % file.alignment(), 0u);
    const uint8_t* bytes = file.tensor_data(info);
    EXPECT_EQ(std::vector<uint8_t>(bytes, bytes + info.n_bytes), data[i]) << specs[i].name;
  }
}

TEST(GgufRoundTrip, EveryMetadataTypeKeepsValueTypeAndOrder) {
  TempDir dir;
  const auto kv = every_type_metadata();
  write_model(dir / "m.gguf", kv, {});
  const File file = File::open(dir / "m.gguf");
  EXPECT_EQ(file.version(), 3u);
  EXPECT_EQ(file.alignment(), 32u);
  EXPECT_EQ(file.metadata(), kv);
  EXPECT_EQ(file.find("t.array.nested")->array().elements[1].array().element_type,
            ValueType::STRING);
  EXPECT_TRUE(file.tensors().empty());
}

TEST(GgufRoundTrip, SeveralTensorTypesWithTheirBytes) {
  TempDir dir;
  const auto data = write_model(dir / "m.gguf", {{"general.name", Value("x")}}, kSeveralTypes);
  const File file = File::open(dir / "m.gguf");
  expect_tensors_match(file, kSeveralTypes, data);
  const TensorInfo& embd = file.tensor("token_embd.weight");
  EXPECT_EQ(embd.n_elements, 512u * 3u);
  EXPECT_EQ(embd.n_bytes, 2u * 144u * 3u);  // two Q4_K blocks of 144 bytes per row
  EXPECT_EQ(file.tensor("blk.0.ffn_up.weight").n_bytes, 3u * 5u * 2u * 2u * 2u);
  // Data is packed in declaration order, each tensor padded to the alignment, as gguf-py does.
  EXPECT_EQ(file.tensors()[1].offset, 864u);
  EXPECT_EQ(file.file_size(), file.data_offset() + file.tensors().back().offset + 32);
}

class GgufAlignment : public ::testing::TestWithParam<uint32_t> {};

TEST_P(GgufAlignment, DataSectionAndOffsetsFollowGeneralAlignment) {
  TempDir dir;
  const uint32_t alignment = GetParam();
  const auto data = write_model(
      dir / "m.gguf", {{"general.alignment", Value(alignment)}, {"general.name", Value("odd")}},
      kSeveralTypes);
  const File file = File::open(dir / "m.gguf");
  EXPECT_EQ(file.alignment(), alignment);
  EXPECT_EQ(file.data_offset() % alignment, 0u);
  expect_tensors_match(file, kSeveralTypes, data);
}

INSTANTIATE_TEST_SUITE_P(GgufPowers, GgufAlignment, ::testing::Values(1u, 8u, 64u, 4096u));

TEST(GgufRoundTrip, Version2FilesReadLikeVersion3) {
  TempDir dir;
  const auto kv = every_type_metadata();
  const auto data = write_model(dir / "v2.gguf", kv, kSeveralTypes, 2);
  const File file = File::open(dir / "v2.gguf");
  EXPECT_EQ(file.version(), 2u);
  EXPECT_EQ(file.metadata(), kv);
  expect_tensors_match(file, kSeveralTypes, data);
}

TEST(GgufRoundTrip, ChunkedTensorWritesGiveTheSameFile) {
  TempDir dir;
  const std::vector<TensorSpec> specs = {{"a", TensorType::Q8_0, {32, 10}},
                                         {"b", TensorType::F32, {3}}};
  const auto data = write_model(dir / "whole.gguf", {}, specs);
  Writer writer(dir / "chunked.gguf");
  for (const TensorSpec& t : specs) writer.add_tensor(t.name, t.type, t.dims);
  writer.write_header();
  for (size_t i = 0; i < specs.size(); ++i) {
    writer.begin_tensor(specs[i].name);
    for (size_t at = 0; at < data[i].size(); at += 7) {
      const size_t n = std::min<size_t>(7, data[i].size() - at);
      writer.append(std::span<const uint8_t>(data[i].data() + at, n));
    }
    writer.end_tensor();
  }
  writer.finish();
  EXPECT_EQ(read_file(dir / "chunked.gguf"), read_file(dir / "whole.gguf"));
}

TEST(GgufReader, ReadsTheCommittedValidFile) {
  const auto path = source_dir() / "tests/data/gguf/valid/two_tensors.gguf";
  const File file = File::open(path);
  EXPECT_EQ(file.get_string("general.architecture"), "llama");
  const TensorInfo& a = file.tensor("a");
  EXPECT_EQ(a.dims, (std::vector<uint64_t>{4, 2}));
  EXPECT_EQ(a.n_bytes, 32u);
  EXPECT_EQ(file.tensor_data(a)[31], 31);  // the generator fills 'a' with bytes 0..31
  EXPECT_EQ(file.tensor("b").type, TensorType::Q8_0);
  EXPECT_EQ(file.tensor("b").n_bytes, 34u);
}

TEST(GgufReader, AcceptsInvalidUtf8AndReplacesItInJson) {
  TempDir dir;
  write_model(dir / "m.gguf", {{"s", Value(std::string("ok\xff\xc3"))}}, {});
  const File file = File::open(dir / "m.gguf");
  EXPECT_EQ(file.get_string("s"), "ok\xff\xc3");
  EXPECT_EQ(file.find("s")->to_json().dump(), "\"ok\xEF\xBF\xBD\xEF\xBF\xBD\"");
}

TEST(GgufReader, TypedAccessorsConvertIntegersAndNameTheKeyOnError) {
  TempDir dir;
  const auto path = dir / "m.gguf";
  write_model(path, every_type_metadata(), {});
  const File file = File::open(path);
  EXPECT_EQ(file.get_uint("t.uint8"), 255u);
  EXPECT_EQ(file.get_uint("t.uint64"), std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(file.get_int("t.int64"), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(file.get_int("t.uint32"), 4294967295);
  EXPECT_FLOAT_EQ(static_cast<float>(file.get_float("t.float32")), 1.5e-7f);
  EXPECT_EQ(file.get_float("t.float64"), -2.718281828459045);
  EXPECT_TRUE(file.get_bool("t.bool.true"));
  EXPECT_EQ(file.get_string_array("t.array.string"),
            (std::vector<std::string>{"<s>", "", "▁the"}));
  EXPECT_EQ(file.get_float_array("t.array.float32"), (std::vector<float>{0.5f, -1.25f, 3e38f}));
  EXPECT_EQ(file.get_int_array("t.array.int8"), (std::vector<int64_t>{-1, 2}));
  EXPECT_EQ(file.get_uint_or("missing", 7), 7u);
  EXPECT_EQ(file.get_string_or("general.architecture", "x"), "llama");
  EXPECT_EQ(file.find("missing"), nullptr);
  EXPECT_EQ(file.find_tensor("missing"), nullptr);

  EXPECT_THAT(error_of([&] { file.get_uint("t.int8"); }),
              HasSubstr("metadata key 't.int8' is INT8 = -128, expected a non-negative integer"));
  EXPECT_THAT(error_of([&] { file.get_int("t.uint64"); }),
              HasSubstr("'t.uint64' is UINT64 = 18446744073709551615, expected an integer that"));
  EXPECT_THAT(error_of([&] { file.get_string("t.float32"); }),
              HasSubstr("'t.float32' is FLOAT32"));
  EXPECT_THAT(error_of([&] { file.get_float_or("t.bool.true", 1.0); }),
              HasSubstr("'t.bool.true' is BOOL = true, expected FLOAT32 or FLOAT64"));
  EXPECT_THAT(error_of([&] { file.get_string_array("t.array.int32"); }),
              HasSubstr("'t.array.int32' is ARRAY = [-1, 0, 1], expected an ARRAY of STRING"));
  EXPECT_THAT(error_of([&] { file.get_bool("nope"); }),
              HasSubstr(path.string() + ": metadata key 'nope' is missing"));
  EXPECT_THAT(error_of([&] { file.tensor("blk.9.attn_k.weight"); }),
              HasSubstr(path.string() + ": tensor 'blk.9.attn_k.weight' is missing"));
}

TEST(GgufReader, FileIsMovableAndKeepsItsMapping) {
  TempDir dir;
  const auto data = write_model(dir / "m.gguf", {}, kSeveralTypes);
  File first = File::open(dir / "m.gguf");
  const uint8_t* bytes = first.tensor_data(first.tensors()[0]);
  File second = std::move(first);
  EXPECT_EQ(second.tensor_data(second.tensors()[0]), bytes);
  File third = File::open(dir / "m.gguf");
  third = std::move(second);
  expect_tensors_match(third, kSeveralTypes, data);
}

TEST(GgufReader, MissingFileAndDirectoryAreErrors) {
  TempDir dir;
  EXPECT_THAT(error_of([&] { File::open(dir / "absent.gguf"); }),
              HasSubstr("absent.gguf: cannot open: No such file"));
  EXPECT_THAT(error_of([&] { File::open(dir.path()); }), HasSubstr("not a regular file"));
}

TEST(GgufValue, DisplayForms) {
  EXPECT_EQ(Value(uint8_t{7}).to_string(), "7");
  EXPECT_EQ(Value("a").to_string(), "\"a\"");
  EXPECT_EQ(Value::array(std::vector<int32_t>{1, 2, 3, 4}).to_string(2), "[1, 2, ... (4 elements)]");
  EXPECT_EQ(Value::array(ValueType::ARRAY, {Value::array(std::vector<bool>{true})}).to_json().dump(),
            "[[true]]");
  EXPECT_THAT(error_of([] { Value::array(ValueType::INT32, {Value(1.0f)}); }),
              HasSubstr("array element 0 is FLOAT32 in an array of INT32"));
  EXPECT_THAT(error_of([] { Value(1).as<std::string>(); }), HasSubstr("value is INT32, not STRING"));
}

// ---- malformed input ------------------------------------------------------------------------------

TEST(GgufMalformed, EveryCorpusFileGivesItsErrorWithFileAndOffset) {
  const auto dir = source_dir() / "tests/data/gguf/malformed";
  std::ifstream manifest(dir / "expected.txt");
  ASSERT_TRUE(manifest) << "missing manifest; run tools/make_malformed_gguf.py";
  std::string line;
  size_t checked = 0;
  while (std::getline(manifest, line)) {
    const size_t tab = line.find('\t');
    ASSERT_NE(tab, std::string::npos) << line;
    const auto path = dir / line.substr(0, tab);
    const std::string message = error_of([&] { File::open(path); });
    EXPECT_THAT(message, HasSubstr(path.string() + ": offset ")) << path;
    EXPECT_THAT(message, HasSubstr(line.substr(tab + 1))) << path;
    ++checked;
  }
  size_t files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    files += entry.path().extension() == ".gguf";
  }
  EXPECT_EQ(checked, files) << "every corpus file must be listed in expected.txt";
  EXPECT_GE(checked, 40u);
}

TEST(GgufMalformed, EveryTruncationOfAValidFileIsAnError) {
  TempDir dir;
  // The last tensor fills its padding exactly, so every byte of the file is needed.
  const std::vector<TensorSpec> specs = {{"a", TensorType::Q8_0, {32, 2}},
                                         {"b", TensorType::F32, {8}}};
  write_model(dir / "full.gguf", every_type_metadata(), specs);
  const std::string full = read_file(dir / "full.gguf");
  ASSERT_NO_THROW(File::open(dir / "full.gguf"));
  const auto cut = dir / "cut.gguf";
  for (size_t size = 0; size < full.size(); ++size) {
    write_file(cut, full.substr(0, size));
    const std::string message = error_of([&] { File::open(cut); });
    EXPECT_THAT(message, HasSubstr(cut.string() + ": offset ")) << "size " << size;
    if (::testing::Test::HasFailure()) break;
  }
}

TEST(GgufMalformed, NestingUpToTheLimitIsAccepted) {
  TempDir dir;
  Value value = Value::array(std::vector<uint8_t>{1});
  for (uint32_t depth = 1; depth < kMaxArrayNesting; ++depth) {
    value = Value::array(ValueType::ARRAY, {value});
  }
  write_model(dir / "m.gguf", {{"deep", value}}, {});
  EXPECT_EQ(File::open(dir / "m.gguf").metadata()[0].second, value);
  Writer writer(dir / "too_deep.gguf");
  EXPECT_THAT(error_of([&] { writer.set("deep", Value::array(ValueType::ARRAY, {value})); }),
              HasSubstr("arrays nested more than 16 deep"));
}

// ---- writer misuse --------------------------------------------------------------------------------

TEST(GgufWriter, RejectsCallsOutOfOrderAndWrongSizes) {
  TempDir dir;
  Writer writer(dir / "m.gguf");
  writer.set("k", Value(1));
  EXPECT_THAT(error_of([&] { writer.set("k", Value(2)); }), HasSubstr("metadata key 'k' set twice"));
  EXPECT_THAT(error_of([&] { writer.set("general.alignment", Value(uint32_t{24})); }),
              HasSubstr("general.alignment 24 is not a power of two"));
  EXPECT_THAT(error_of([&] { writer.set("general.alignment", Value(uint64_t{32})); }),
              HasSubstr("general.alignment must be UINT32, not UINT64"));
  EXPECT_THAT(error_of([&] { writer.add_tensor("q", TensorType::Q4_K, {100}); }),
              HasSubstr("tensor 'q': row length ne[0] = 100 is not a multiple of the Q4_K"));
  EXPECT_THAT(error_of([&] { writer.add_tensor("z", TensorType::F32, {4, 0}); }),
              HasSubstr("tensor 'z': dims 4 x 0 are zero or overflow int64"));
  EXPECT_THAT(error_of([&] { writer.add_tensor("d", TensorType::F32, {1, 1, 1, 1, 1}); }),
              HasSubstr("tensor 'd': 5 dims (1 to 4 allowed)"));
  writer.add_tensor("a", TensorType::F32, {4});
  writer.add_tensor("b", TensorType::F16, {4});
  EXPECT_THAT(error_of([&] { writer.add_tensor("a", TensorType::F32, {4}); }),
              HasSubstr("tensor 'a' declared twice"));
  EXPECT_THAT(error_of([&] { writer.write_tensor("a", std::vector<uint8_t>(16)); }),
              HasSubstr("cannot begin a tensor while declaring"));
  writer.write_header();
  EXPECT_THAT(error_of([&] { writer.set("late", Value(1)); }),
              HasSubstr("cannot set metadata while writing tensor data"));
  EXPECT_THAT(error_of([&] { writer.write_tensor("b", std::vector<uint8_t>(8)); }),
              HasSubstr("tensor 'b' written out of order: tensor 'a' is next"));
  writer.begin_tensor("a");
  EXPECT_THAT(error_of([&] { writer.append(std::vector<uint8_t>(17)); }),
              HasSubstr("tensor 'a': 17 more bytes would exceed its size of 16 bytes (0 written)"));
  writer.append(std::vector<uint8_t>(10));
  EXPECT_THAT(error_of([&] { writer.end_tensor(); }), HasSubstr("tensor 'a': 10 of its 16 bytes"));
  writer.append(std::vector<uint8_t>(6));
  writer.end_tensor();
  EXPECT_THAT(error_of([&] { writer.finish(); }),
              HasSubstr("finish() before the data of tensor 'b' was written"));
  writer.write_tensor("b", std::vector<uint8_t>(8));
  EXPECT_THAT(error_of([&] { writer.write_tensor("c", std::vector<uint8_t>(8)); }),
              HasSubstr("all declared tensors are already written"));
  writer.finish();
  EXPECT_EQ(File::open(dir / "m.gguf").tensors().size(), 2u);
}

TEST(GgufWriter, AnUnfinishedFileIsRemoved) {
  TempDir dir;
  {
    Writer writer(dir / "m.gguf");
    writer.add_tensor("a", TensorType::F32, {4});
    writer.write_header();
    EXPECT_TRUE(std::filesystem::exists(dir / "m.gguf"));
  }
  EXPECT_FALSE(std::filesystem::exists(dir / "m.gguf"));
}

}  // namespace
}  // namespace realizar::gguf
