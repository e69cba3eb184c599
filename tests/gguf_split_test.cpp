// Split GGUF models (llama.cpp's gguf-split layout): parts written here with the project's Writer,
// opened through the first part as one tensor table; every inconsistency is a clear error; a split
// real-shaped model loads and generates exactly what the unsplit file does. The gguf-py side
// (GGUFWriter's split_max_tensors) is tests/python/test_gguf_split.py.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>

#include "realizar/error.h"
#include "realizar/gguf.h"
#include "test_support.h"

namespace realizar::gguf {
namespace {

namespace fs = std::filesystem;
using realizar::testing::run_apr;
using realizar::testing::TempDir;
using ::testing::HasSubstr;

using realizar::testing::error_of;

struct Tensor {
  std::string name;
  TensorType type;
  std::vector<uint64_t> dims;
  std::vector<uint8_t> bytes;
};

std::vector<Tensor> sample_tensors() {
  std::mt19937 rng(7);
  std::vector<Tensor> tensors = {{"token_embd.weight", TensorType::Q8_0, {64, 6}, {}},
                                 {"blk.0.attn_norm.weight", TensorType::F32, {64}, {}},
                                 {"blk.0.attn_q.weight", TensorType::Q4_K, {256, 3}, {}},
                                 {"blk.0.ffn_up.weight", TensorType::F16, {64, 5}, {}},
                                 {"output.weight", TensorType::Q6_K, {256, 2}, {}}};
  for (Tensor& t : tensors) {
    t.bytes.resize(row_bytes(t.type, t.dims[0]) * (t.dims.size() > 1 ? t.dims[1] : 1));
    for (uint8_t& b : t.bytes) b = static_cast<uint8_t>(rng());
  }
  return tensors;
}

// How to split: part_of[i] is tensor i's part; the split keys each part gets (gguf-split's by
// default: split.no = the part, split.count = count, split.tensors.count = all tensors) can be
// overridden to make broken files.
struct SplitLayout {
  uint16_t count = 3;
  std::vector<uint16_t> part_of = {0, 0, 1, 2, 2};
  std::function<uint16_t(uint16_t part)> split_no = [](uint16_t part) { return part; };
  std::function<uint16_t(uint16_t part)> split_count;  // default: count
  int32_t tensors_count = -1;                          // -1: the number of tensors
  std::vector<std::pair<uint16_t, size_t>> extra;      // (part, tensor index) written again there
};

std::string part_name(const fs::path& prefix, int no, int count) {
  return fmt::format("{}-{:05}-of-{:05}.gguf", prefix.string(), no + 1, count);
}

// Writes `tensors` as gguf-split does: metadata in the first part, split keys in every part.
std::vector<fs::path> write_split(const fs::path& prefix, const std::vector<Tensor>& tensors,
                                  const SplitLayout& layout) {
  std::vector<fs::path> paths;
  for (uint16_t part = 0; part < layout.count; ++part) {
    paths.emplace_back(part_name(prefix, part, layout.count));
    Writer writer(paths.back());
    if (part == 0) {
      writer.set("general.architecture", Value("llama"));
      writer.set("general.name", Value("split test"));
    }
    writer.set("split.no", Value(layout.split_no(part)));
    writer.set("split.count", Value(layout.split_count ? layout.split_count(part) : layout.count));
    writer.set("split.tensors.count",
               Value(layout.tensors_count >= 0 ? layout.tensors_count
                                               : static_cast<int32_t>(tensors.size())));
    std::vector<const Tensor*> mine;
    for (size_t i = 0; i < tensors.size(); ++i) {
      if (layout.part_of[i] == part) mine.push_back(&tensors[i]);
    }
    for (const auto& [extra_part, index] : layout.extra) {
      if (extra_part == part) mine.push_back(&tensors[index]);
    }
    for (const Tensor* t : mine) writer.add_tensor(t->name, t->type, t->dims);
    writer.write_header();
    for (const Tensor* t : mine) writer.write_tensor(t->name, t->bytes);
    writer.finish();
  }
  return paths;
}

TEST(GgufSplit, FirstPartOpensAllPartsAsOneTensorTable) {
  TempDir dir;
  const auto tensors = sample_tensors();
  const SplitLayout layout;
  const auto paths = write_split(dir / "model", tensors, layout);
  const File file = File::open(paths[0]);

  ASSERT_EQ(file.parts().size(), 3u);
  uint64_t total = 0;
  for (size_t k = 0; k < 3; ++k) {
    EXPECT_EQ(file.parts()[k].path, paths[k]);
    EXPECT_EQ(file.parts()[k].size, fs::file_size(paths[k]));
    total += fs::file_size(paths[k]);
  }
  EXPECT_EQ(file.file_size(), total);
  EXPECT_EQ(file.path(), paths[0]);
  EXPECT_EQ(file.get_string("general.name"), "split test");  // the first part's metadata

  ASSERT_EQ(file.tensors().size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorInfo& info = file.tensors()[i];
    EXPECT_EQ(info.name, tensors[i].name);
    EXPECT_EQ(&file.tensor(tensors[i].name), &info);
    EXPECT_EQ(info.part, layout.part_of[i]);
    EXPECT_EQ(info.dims, tensors[i].dims);
    const uint8_t* data = file.tensor_data(info);
    EXPECT_EQ(std::vector<uint8_t>(data, data + info.n_bytes), tensors[i].bytes) << info.name;
  }
}

// gguf-split --no-tensor-first-split: the first part holds only metadata.
TEST(GgufSplit, FirstPartWithoutTensors) {
  TempDir dir;
  const auto tensors = sample_tensors();
  SplitLayout layout;
  layout.count = 2;
  layout.part_of = {1, 1, 1, 1, 1};
  const File file = File::open(write_split(dir / "m", tensors, layout)[0]);
  ASSERT_EQ(file.tensors().size(), tensors.size());
  const TensorInfo& last = file.tensors().back();
  EXPECT_EQ(last.part, 1u);
  EXPECT_EQ(std::vector<uint8_t>(file.tensor_data(last), file.tensor_data(last) + last.n_bytes),
            tensors.back().bytes);
}

// The file survives a move with all its mappings (pointers unchanged).
TEST(GgufSplit, MovedFileKeepsEveryPartMapped) {
  TempDir dir;
  const auto tensors = sample_tensors();
  File file = File::open(write_split(dir / "m", tensors, {})[0]);
  const uint8_t* last = file.tensor_data(file.tensors().back());
  const File moved = std::move(file);
  EXPECT_EQ(moved.tensor_data(moved.tensors().back()), last);
  EXPECT_EQ(last[0], tensors.back().bytes[0]);
}

TEST(GgufSplit, MissingPartIsNamed) {
  TempDir dir;
  const auto paths = write_split(dir / "m", sample_tensors(), {});
  fs::remove(paths[2]);
  EXPECT_THAT(error_of([&] { File::open(paths[0]); }),
              HasSubstr(paths[0].string() + ": part 3 of 3 is missing: " + paths[2].string()));
}

TEST(GgufSplit, OpeningALaterPartNamesTheFirst) {
  TempDir dir;
  const auto paths = write_split(dir / "m", sample_tensors(), {});
  EXPECT_THAT(error_of([&] { File::open(paths[1]); }),
              HasSubstr("this is part 2 of 3 of a split model: open the first part (" +
                        paths[0].string() + ")"));
}

TEST(GgufSplit, TensorCountMustMatch) {
  TempDir dir;
  SplitLayout layout;
  layout.tensors_count = 6;
  const auto paths = write_split(dir / "m", sample_tensors(), layout);
  EXPECT_THAT(error_of([&] { File::open(paths[0]); }),
              HasSubstr("split.tensors.count is 6 but the 3 parts hold 5 tensors"));
}

TEST(GgufSplit, TensorInTwoPartsIsAnError) {
  TempDir dir;
  SplitLayout layout;
  layout.extra = {{2, 2}};  // blk.0.attn_q.weight in part 2 (its own) and again in part 3
  const auto paths = write_split(dir / "m", sample_tensors(), layout);
  EXPECT_THAT(error_of([&] { File::open(paths[0]); }),
              HasSubstr("tensor 'blk.0.attn_q.weight' is in part 2 and in part 3"));
}

TEST(GgufSplit, PartKeysMustAgreeWithTheName) {
  TempDir dir;
  SplitLayout wrong_no;
  wrong_no.split_no = [](uint16_t part) { return part == 2 ? uint16_t{1} : part; };
  auto paths = write_split(dir / "a", sample_tensors(), wrong_no);
  EXPECT_THAT(error_of([&] { File::open(paths[0]); }),
              HasSubstr(paths[2].string() +
                        ": split.no 1 and split.count 3 say part 2 of 3, but the name says part 3 "
                        "of 3"));

  SplitLayout wrong_count;
  wrong_count.split_count = [](uint16_t part) { return part == 1 ? uint16_t{4} : uint16_t{3}; };
  paths = write_split(dir / "b", sample_tensors(), wrong_count);
  EXPECT_THAT(error_of([&] { File::open(paths[0]); }),
              HasSubstr("split.count 4 say part 2 of 4, but the name says part 2 of 3"));
}

TEST(GgufSplit, FirstPartMustBeNamedAsAPart) {
  TempDir dir;
  const auto paths = write_split(dir / "m", sample_tensors(), {});
  fs::rename(paths[0], dir / "renamed.gguf");
  EXPECT_THAT(error_of([&] { File::open(dir / "renamed.gguf"); }),
              HasSubstr("the first part of a model split in 3 must be named "
                        "NAME-00001-of-00003.gguf"));
}

TEST(GgufSplit, SplitKeysOfTheWrongTypeAreErrors) {
  TempDir dir;
  const auto path = dir / "m-00001-of-00001.gguf";
  {
    Writer writer(path);
    writer.set("split.no", Value(uint16_t{0}));
    writer.set("split.count", Value("one"));
    writer.write_header();
    writer.finish();
  }
  EXPECT_THAT(error_of([&] { File::open(path); }),
              HasSubstr("metadata key 'split.count' is STRING = \"one\", expected a non-negative"));
}

// A real-shaped model split in three parts loads through Model::load and generates the same
// greedy text as the unsplit file; inspect lists the same tensors.
TEST(GgufSplit, SplitModelRunsLikeTheWholeOne) {
  TempDir dir;
  const auto whole = dir / "whole.gguf";
  const auto synth = run_apr(
      {"synth", "tiny", "-o", whole.string(), "--type", "q8_0", "--seed", "5", "--tokenizer",
       (realizar::testing::source_dir() / "tests/data/tokenizers/qwen2/tokenizer.json").string()});
  ASSERT_EQ(synth.exit_code, 0) << synth.err;
  const File source = File::open(whole);
  const auto first = dir / "split-00001-of-00003.gguf";
  {
    std::vector<std::unique_ptr<Writer>> writers;
    for (int k = 0; k < 3; ++k) {
      writers.push_back(std::make_unique<Writer>(part_name(dir / "split", k, 3)));
      if (k == 0) {
        for (const auto& [key, value] : source.metadata()) writers[0]->set(key, value);
      }
      writers[k]->set("split.no", Value(static_cast<uint16_t>(k)));
      writers[k]->set("split.count", Value(uint16_t{3}));
      writers[k]->set("split.tensors.count", Value(static_cast<int32_t>(source.tensors().size())));
    }
    const auto part_of = [&](size_t i) { return i * 3 / source.tensors().size(); };
    for (size_t i = 0; i < source.tensors().size(); ++i) {
      const TensorInfo& t = source.tensors()[i];
      writers[part_of(i)]->add_tensor(t.name, t.type, t.dims);
    }
    for (auto& w : writers) w->write_header();
    for (size_t i = 0; i < source.tensors().size(); ++i) {
      const TensorInfo& t = source.tensors()[i];
      writers[part_of(i)]->write_tensor(t.name, {source.tensor_data(t), t.n_bytes});
    }
    for (auto& w : writers) w->finish();
  }
  EXPECT_EQ(File::open(first).parts().size(), 3u);

  for (const char* device : {"cpu", "reference"}) {
    const std::vector<std::string> args = {"-p", "Hello there",  "-n",       "12",  "--temp",
                                           "0",  "--ignore-eos", "--device", device};
    auto with_model = [&](const fs::path& model) {
      std::vector<std::string> all = {"run", model.string()};
      all.insert(all.end(), args.begin(), args.end());
      return run_apr(all);
    };
    const auto want = with_model(whole);
    const auto got = with_model(first);
    ASSERT_EQ(want.exit_code, 0) << want.err;
    ASSERT_EQ(got.exit_code, 0) << got.err;
    EXPECT_FALSE(want.out.empty());
    EXPECT_EQ(got.out, want.out) << device;
  }
  const auto inspect_whole = run_apr({"inspect", whole.string(), "--json"});
  const auto inspect_split = run_apr({"inspect", first.string(), "--json"});
  ASSERT_EQ(inspect_split.exit_code, 0) << inspect_split.err;
  const auto tensors_of = [](const std::string& json_text) {
    return nlohmann::json::parse(json_text)["tensors"];
  };
  EXPECT_EQ(tensors_of(inspect_split.out), tensors_of(inspect_whole.out));
}

}  // namespace
}  // namespace realizar::gguf
