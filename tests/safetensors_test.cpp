#include "realizar/safetensors.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <bit>
#include <cmath>
#include <cstring>

#include "realizar/error.h"
#include "test_support.h"

namespace realizar::safetensors {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::ThrowsMessage;
using nlohmann::json;
using realizar::testing::TempDir;

fs::path fixtures() { return realizar::testing::source_dir() / "tests/data/safetensors"; }

json expected_values() { return json::parse(realizar::testing::read_file(fixtures() / "expected.json")); }

std::vector<uint32_t> float32_bits(const TensorEntry& tensor) {
  std::vector<float> values(tensor.element_count());
  to_float32(tensor, values.data());
  std::vector<uint32_t> bits;
  for (float v : values) bits.push_back(std::bit_cast<uint32_t>(v));
  return bits;
}

// Checks every tensor of the checkpoint against expected.json (written by
// tools/make_safetensors_fixtures.py from numpy's conversions).
void expect_matches(const Checkpoint& checkpoint, const json& expected) {
  ASSERT_EQ(checkpoint.tensors().size(), expected.size());
  for (const auto& [name, want] : expected.items()) {
    SCOPED_TRACE(name);
    const TensorEntry& tensor = checkpoint.tensor(name);
    EXPECT_EQ(tensor.name, name);
    EXPECT_EQ(dtype_name(tensor.dtype), want["dtype"].get<std::string>());
    EXPECT_EQ(tensor.shape, want["shape"].get<std::vector<int64_t>>());
    if (want.contains("f32_bits")) {
      EXPECT_EQ(float32_bits(tensor), want["f32_bits"].get<std::vector<uint32_t>>());
    } else {
      std::vector<int64_t> values(tensor.element_count());
      ASSERT_EQ(tensor.data.size(), values.size() * 8);
      std::memcpy(values.data(), tensor.data.data(), tensor.data.size());
      EXPECT_EQ(values, want["i64"].get<std::vector<int64_t>>());
    }
  }
}

TEST(Safetensors, SingleFileValuesMatchTheReferenceWriter) {
  const Checkpoint checkpoint = Checkpoint::open(fixtures() / "single");
  expect_matches(checkpoint, expected_values()["single"]);
  EXPECT_EQ(checkpoint.metadata().at("format"), "pt");
  EXPECT_EQ(checkpoint.tensor("f32.scalar").shape, std::vector<int64_t>{});
  EXPECT_EQ(checkpoint.tensor("f32.scalar").element_count(), 1);
  EXPECT_EQ(checkpoint.tensor("f32.empty").element_count(), 0);
}

TEST(Safetensors, TensorsAreSortedByName) {
  const Checkpoint checkpoint = Checkpoint::open(fixtures() / "single" / "model.safetensors");
  std::vector<std::string> names;
  for (const TensorEntry& t : checkpoint.tensors()) names.push_back(t.name);
  EXPECT_EQ(names, (std::vector<std::string>{"bf16.special", "f16.special", "f32.empty", "f32.scalar", "f32.special",
                                             "i64.position_ids"}));
}

TEST(Safetensors, NonFloatDtypesAreListedButNotConverted) {
  const Checkpoint checkpoint = Checkpoint::open(fixtures() / "single");
  const TensorEntry& ids = checkpoint.tensor("i64.position_ids");
  EXPECT_EQ(ids.dtype, DType::I64);
  std::vector<float> out(6);
  EXPECT_THAT([&] { to_float32(ids, out.data()); },
              ThrowsMessage<Error>(AllOf(HasSubstr("'i64.position_ids'"), HasSubstr("dtype I64"), HasSubstr("model.safetensors"))));
}

TEST(Safetensors, MissingTensorIsNamed) {
  const Checkpoint checkpoint = Checkpoint::open(fixtures() / "single");
  EXPECT_EQ(checkpoint.find("nope"), nullptr);
  EXPECT_NE(checkpoint.find("f16.special"), nullptr);
  EXPECT_THAT([&] { checkpoint.tensor("model.nope.weight"); }, ThrowsMessage<Error>(HasSubstr("tensor 'model.nope.weight' not found")));
}

TEST(Safetensors, ShardedCheckpointThroughItsIndex) {
  for (const fs::path& path : {fixtures() / "sharded", fixtures() / "sharded" / "model.safetensors.index.json"}) {
    const Checkpoint checkpoint = Checkpoint::open(path);
    expect_matches(checkpoint, expected_values()["sharded"]);
    EXPECT_EQ(checkpoint.tensor("lm_head.weight").file.filename(), "model-00002-of-00002.safetensors");
    EXPECT_EQ(checkpoint.tensor("model.embed_tokens.weight").file.filename(), "model-00001-of-00002.safetensors");
  }
}

// Independent reference for binary16: value = (-1)^s * 2^(e-15) * (1 + m/1024), subnormal 2^-14 * m/1024.
TEST(Safetensors, EveryFloat16BitPatternConvertsExactly) {
  std::vector<uint16_t> all(65536);
  for (uint32_t i = 0; i < all.size(); ++i) all[i] = static_cast<uint16_t>(i);
  const TensorEntry tensor{"all", DType::F16, {65536}, std::as_bytes(std::span(all)), "memory"};
  std::vector<float> out(all.size());
  to_float32(tensor, out.data());
  for (uint32_t h = 0; h < all.size(); ++h) {
    const int exponent = (h >> 10) & 0x1F;
    const int mantissa = h & 0x3FF;
    const float sign = (h & 0x8000) ? -1.0f : 1.0f;
    if (exponent == 0x1F && mantissa != 0) {
      ASSERT_TRUE(std::isnan(out[h])) << h;
      ASSERT_EQ(std::bit_cast<uint32_t>(out[h]), ((h & 0x8000u) << 16) | 0x7F800000u | (mantissa << 13)) << h;
      continue;
    }
    const float magnitude = exponent == 0x1F ? INFINITY
                            : exponent == 0  ? std::ldexp(static_cast<float>(mantissa), -24)
                                             : std::ldexp(static_cast<float>(1024 + mantissa), exponent - 25);
    ASSERT_EQ(std::bit_cast<uint32_t>(out[h]), std::bit_cast<uint32_t>(sign * magnitude)) << "f16 bits " << h;
  }
}

// ---- malformed files ----------------------------------------------------------------------------

std::string le64(uint64_t value) {
  std::string bytes(8, '\0');
  std::memcpy(bytes.data(), &value, 8);
  return bytes;
}

// A safetensors file from raw parts, so tests can break any of them.
std::string file_bytes(const std::string& header, const std::string& data) { return le64(header.size()) + header + data; }

std::string two_tensor_header(const std::string& a_offsets, const std::string& b_offsets, const std::string& b_dtype = "F32") {
  return R"({"a":{"dtype":"F32","shape":[2],"data_offsets":)" + a_offsets + R"(},"b":{"dtype":")" + b_dtype +
         R"(","shape":[1],"data_offsets":)" + b_offsets + "}}";
}

void expect_open_fails(const std::string& bytes, const std::string& fragment) {
  TempDir dir;
  realizar::testing::write_file(dir / "bad.safetensors", bytes);
  EXPECT_THAT([&] { Checkpoint::open(dir / "bad.safetensors"); },
              ThrowsMessage<Error>(AllOf(HasSubstr("bad.safetensors"), HasSubstr(fragment))))
      << "expected: " << fragment;
}

TEST(SafetensorsErrors, ValidHandMadeFileOpens) {
  TempDir dir;
  realizar::testing::write_file(dir / "ok.safetensors", file_bytes(two_tensor_header("[0,8]", "[8,12]"), std::string(12, '\0')));
  EXPECT_EQ(Checkpoint::open(dir / "ok.safetensors").tensors().size(), 2u);
}

TEST(SafetensorsErrors, BrokenHeaders) {
  const std::string valid_header = two_tensor_header("[0,8]", "[8,12]");
  const std::string data(12, '\0');
  expect_open_fails("abc", "too short for the 8-byte header length");
  expect_open_fails(le64(500) + valid_header + data, "header length 500 runs past the end of the file");
  expect_open_fails(le64(200'000'000) + valid_header + data, "exceeds the 100 MB limit");
  expect_open_fails(file_bytes(valid_header.substr(0, 30), data), "the header is not valid JSON");
  expect_open_fails(file_bytes("[1,2]", data), "the header must be a JSON object");
  expect_open_fails(file_bytes(R"({"a":{"dtype":"F32","shape":[2]}})", data), "tensor 'a' needs");
  expect_open_fails(file_bytes(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data), "non-integer or negative");
}

TEST(SafetensorsErrors, BrokenOffsetsAndTypes) {
  const std::string data(12, '\0');
  expect_open_fails(file_bytes(two_tensor_header("[0,8]", "[8,16]"), data), "tensor 'b': data_offsets [8, 16] run past the data buffer of 12 bytes");
  expect_open_fails(file_bytes(two_tensor_header("[8,0]", "[8,12]"), data), "tensor 'a': data_offsets begin 8 > end 0");
  expect_open_fails(file_bytes(two_tensor_header("[0,8]", "[8,10]"), data), "tensor 'b': 2 bytes of data but shape [1] of F32 needs 4");
  expect_open_fails(file_bytes(two_tensor_header("[0,8]", "[4,8]"), data), "tensors 'a' and 'b' overlap");
  expect_open_fails(file_bytes(two_tensor_header("[0,8]", "[8,12]", "F17"), data), "tensor 'b' has unknown dtype 'F17'");
  expect_open_fails(file_bytes(two_tensor_header("[0,8]", "[8,12]\"x"), data), "not valid JSON");
}

// Copies the sharded fixture into a temp dir so a test can break it.
void copy_sharded(const TempDir& dir) {
  fs::copy(fixtures() / "sharded", dir.path(), fs::copy_options::recursive);
}

TEST(SafetensorsErrors, MissingShard) {
  TempDir dir;
  copy_sharded(dir);
  fs::remove(dir / "model-00002-of-00002.safetensors");
  EXPECT_THAT([&] { Checkpoint::open(dir.path()); },
              ThrowsMessage<Error>(AllOf(HasSubstr("model.safetensors.index.json"), HasSubstr("model-00002-of-00002.safetensors is missing"))));
}

TEST(SafetensorsErrors, IndexedTensorAbsentFromItsShard) {
  TempDir dir;
  copy_sharded(dir);
  json index = json::parse(realizar::testing::read_file(dir / "model.safetensors.index.json"));
  index["weight_map"]["model.layers.1.mlp.weight"] = "model-00001-of-00002.safetensors";
  realizar::testing::write_file(dir / "model.safetensors.index.json", index.dump());
  EXPECT_THAT([&] { Checkpoint::open(dir.path()); },
              ThrowsMessage<Error>(HasSubstr("tensor 'model.layers.1.mlp.weight' is listed in the index but absent from its shard")));
  // A tensor that exists, but in the other shard, is also caught.
  index["weight_map"].erase("model.layers.1.mlp.weight");
  index["weight_map"]["lm_head.weight"] = "model-00001-of-00002.safetensors";
  realizar::testing::write_file(dir / "model.safetensors.index.json", index.dump());
  EXPECT_THAT([&] { Checkpoint::open(dir.path()); }, ThrowsMessage<Error>(HasSubstr("tensor 'lm_head.weight' is listed in the index")));
}

TEST(SafetensorsErrors, DuplicateTensorAcrossShards) {
  TempDir dir;
  const std::string shard = file_bytes(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", std::string(4, '\0'));
  realizar::testing::write_file(dir / "one.safetensors", shard);
  realizar::testing::write_file(dir / "two.safetensors", shard);
  realizar::testing::write_file(dir / "model.safetensors.index.json", R"({"weight_map":{"w":"one.safetensors","v":"two.safetensors"}})");
  EXPECT_THAT([&] { Checkpoint::open(dir.path()); },
              ThrowsMessage<Error>(AllOf(HasSubstr("tensor 'w' appears in both"), HasSubstr("one.safetensors"), HasSubstr("two.safetensors"))));
}

TEST(SafetensorsErrors, DirectoryResolution) {
  TempDir dir;
  EXPECT_THAT([&] { Checkpoint::open(dir / "absent"); }, ThrowsMessage<Error>(HasSubstr("no such file or directory")));
  EXPECT_THAT([&] { Checkpoint::open(dir.path()); }, ThrowsMessage<Error>(HasSubstr("no .safetensors file")));
  const std::string file = file_bytes(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", std::string(4, '\0'));
  realizar::testing::write_file(dir / "weights.safetensors", file);
  EXPECT_EQ(Checkpoint::open(dir.path()).tensor("w").file.filename(), "weights.safetensors");  // the only one
  realizar::testing::write_file(dir / "other.safetensors", file);
  EXPECT_THAT([&] { Checkpoint::open(dir.path()); },
              ThrowsMessage<Error>(HasSubstr("2 .safetensors files but no model.safetensors.index.json")));
  realizar::testing::write_file(dir / "model.safetensors", file);  // preferred over the others
  EXPECT_EQ(Checkpoint::open(dir.path()).tensor("w").file.filename(), "model.safetensors");
}

}  // namespace
}  // namespace realizar::safetensors
