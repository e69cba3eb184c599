// `apr run` end to end on a small synth model: what it prints, determinism, and the errors a user
// meets with bad input (each a one-line message and exit code 1, never a crash).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "realizar/gguf.h"
#include "test_support.h"

namespace realizar {
namespace {

using ::testing::HasSubstr;
using testing::run_apr;
using testing::TempDir;

class RunCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    const auto tokenizer = testing::source_dir() / "tests/data/tokenizers/llama2/tokenizer.json";
    const auto result = run_apr({"synth", "tiny", "--tokenizer", tokenizer.string(), "-o",
                                 model().string(), "--type", "q8_0"});
    ASSERT_EQ(result.exit_code, 0) << result.err;
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::filesystem::path model() { return *dir_ / "tiny.gguf"; }

  static TempDir* dir_;
};
TempDir* RunCli::dir_ = nullptr;

TEST_F(RunCli, StreamsTextAndReportsSpeedOnStderr) {
  const auto r = run_apr({"run", model().string(), "-p", "Once upon a time", "-n", "8",
                          "--temp", "0", "--device", "cpu"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(r.out.empty());
  EXPECT_THAT(r.err, HasSubstr("on cpu"));
  EXPECT_THAT(r.err, HasSubstr("TTFT"));
  EXPECT_THAT(r.err, HasSubstr("tok/s"));
}

TEST_F(RunCli, GreedyOutputIsTheSameOnEveryBackend) {
  std::vector<std::string> args = {"run", model().string(), "-p", "Hello", "-n", "12", "--temp",
                                   "0", "--ignore-eos", "--device"};
  auto on = [&](const char* device) {
    auto a = args;
    a.push_back(device);
    return run_apr(a);
  };
  const auto reference = on("reference");
  const auto cpu = on("cpu");
  ASSERT_EQ(reference.exit_code, 0) << reference.err;
  ASSERT_EQ(cpu.exit_code, 0) << cpu.err;
  EXPECT_EQ(cpu.out, reference.out);
}

TEST_F(RunCli, SamplingIsReproducibleForASeed) {
  std::vector<std::string> args = {"run", model().string(), "-p", "Hello", "-n", "16",
                                   "--temp", "1.0", "--ignore-eos", "--seed"};
  auto with_seed = [&](const char* seed) {
    auto a = args;
    a.push_back(seed);
    return run_apr(a).out;
  };
  EXPECT_EQ(with_seed("7"), with_seed("7"));
  EXPECT_NE(with_seed("7"), with_seed("8"));
}

TEST_F(RunCli, MissingFileIsAClearError) {
  const auto r = run_apr({"run", (*dir_ / "absent.gguf").string(), "-p", "x"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("absent.gguf: no such file\n"));  // hub::resolve_model's check
}

TEST_F(RunCli, NonGgufFileIsAClearError) {
  const auto path = *dir_ / "notes.txt";
  testing::write_file(path, "this is not a model, just some text that is long enough\n");
  const auto r = run_apr({"run", path.string(), "-p", "x"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("magic"));
}

TEST_F(RunCli, EmptyPromptIsAClearError) {
  const auto r = run_apr({"run", model().string(), "-p", ""});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("prompt is empty"));
}

TEST_F(RunCli, PromptLongerThanTheContextIsAnErrorNotATruncation) {
  const auto r = run_apr({"run", model().string(), "-p",
                          "one two three four five six seven eight nine ten", "--ctx", "4"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("raise --ctx"));
  EXPECT_TRUE(r.out.empty());
}

TEST_F(RunCli, BadFlagValuesAreRejected) {
  EXPECT_NE(run_apr({"run", model().string(), "-p", "x", "--device", "tpu"}).exit_code, 0);
  EXPECT_NE(run_apr({"run", model().string(), "-p", "x", "--top-p", "2"}).exit_code, 0);
  EXPECT_NE(run_apr({"run", model().string(), "-p", "x", "-n", "0"}).exit_code, 0);
  EXPECT_NE(run_apr({"run", model().string()}).exit_code, 0);  // no prompt
}

// Number checks name the option, what it wants and what it got.
TEST_F(RunCli, BadNumbersAreExplained) {
  const auto zero = run_apr({"run", model().string(), "-p", "x", "-n", "0"});
  EXPECT_NE(zero.exit_code, 0);
  EXPECT_THAT(zero.err, HasSubstr("--max-tokens: must be a number greater than 0, got 0"));
  const auto negative = run_apr({"run", model().string(), "-p", "x", "--temp", "-1"});
  EXPECT_NE(negative.exit_code, 0);
  EXPECT_THAT(negative.err, HasSubstr("--temp: must be a number of at least 0, got -1"));
  const auto text = run_apr({"bench", model().string(), "--parallel", "many"});
  EXPECT_NE(text.exit_code, 0);
  EXPECT_THAT(text.err, HasSubstr("--parallel: must be a number greater than 0, got many"));
}

// A weight stored in a type no backend computes with (I8) is refused by name at load.
TEST_F(RunCli, UnsupportedWeightTypeIsAClearError) {
  const gguf::File source = gguf::File::open(model());
  const auto path = *dir_ / "i8.gguf";
  {
    gguf::Writer writer(path);
    for (const auto& [key, value] : source.metadata()) {
      if (key != "general.alignment") writer.set(key, value);
    }
    for (const auto& t : source.tensors()) {
      const bool swap = t.name == "blk.0.attn_q.weight";
      writer.add_tensor(t.name, swap ? TensorType::I8 : t.type, t.dims);
    }
    writer.write_header();
    for (const auto& t : source.tensors()) {
      if (t.name == "blk.0.attn_q.weight") {
        writer.write_tensor(t.name, std::vector<uint8_t>(t.n_elements, 1));
      } else {
        writer.write_tensor(t.name, {source.tensor_data(t), t.n_bytes});
      }
    }
    writer.finish();
  }
  for (const char* device : {"cpu", "reference"}) {
    const auto r = run_apr({"run", path.string(), "-p", "x", "--device", device});
    EXPECT_EQ(r.exit_code, 1) << device;
    EXPECT_THAT(r.err, HasSubstr("I8")) << device;
  }
}

}  // namespace
}  // namespace realizar
