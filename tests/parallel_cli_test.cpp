// `apr run --tensor-parallel N` / `-tp N` on a small synth model (4 query heads, 2 KV heads): the
// flag is checked against the model when the engine starts (a size the model cannot be split into
// names the sizes that work), and until the CUDA backend runs multi-GPU ranks any N > 1 is refused
// with one line on every device, never run on one GPU instead; N = 1 runs as without the flag.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "test_support.h"

namespace realizar {
namespace {

using ::testing::HasSubstr;
using testing::run_apr;
using testing::TempDir;

const char* const kNotYet =
    "apr: error: tensor parallelism needs 2 GPUs and the CUDA backend's multi-GPU ranks, which this build does "
    "not run yet\n";

class TensorParallelCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    const auto r = run_apr({"synth", "tiny", "-o", model(), "--type", "q8_0"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string model() { return (*dir_ / "tiny.gguf").string(); }

  static testing::CommandResult run(std::vector<std::string> extra) {
    std::vector<std::string> args = {"run", model(), "-n", "4", "--temp", "0", "--ignore-eos"};
    args.insert(args.end(), extra.begin(), extra.end());
    return run_apr(args);
  }

  static TempDir* dir_;
};
TempDir* TensorParallelCli::dir_ = nullptr;

TEST_F(TensorParallelCli, MoreThanOneRankIsRefusedOnEveryDeviceNeverRunOnOne) {
  for (const char* device : {"auto", "cpu", "reference", "cuda"}) {
    const auto r = run({"-p", "Hello", "-tp", "2", "--device", device});
    EXPECT_EQ(r.exit_code, 1) << device;
    EXPECT_EQ(r.err, kNotYet) << device;
    EXPECT_EQ(r.out, "") << device;
  }
}

TEST_F(TensorParallelCli, EverySpellingOfTheFlagIsTheSame) {
  for (const std::vector<std::string>& flag :
       {std::vector<std::string>{"--tensor-parallel", "2"}, {"--tensor-parallel=2"}, {"-tp", "2"}, {"-tp=2"}, {"-tp2"}}) {
    std::vector<std::string> args = {"-p", "Hello"};
    args.insert(args.end(), flag.begin(), flag.end());
    const auto r = run(args);
    EXPECT_EQ(r.exit_code, 1) << flag.front();
    EXPECT_EQ(r.err, kNotYet) << flag.front();
  }
}

TEST_F(TensorParallelCli, ASizeTheModelCannotTakeNamesTheSizesThatWork) {
  const auto four = run({"-p", "Hello", "-tp", "4"});
  EXPECT_EQ(four.exit_code, 1);
  EXPECT_EQ(four.err,
            "apr: error: cannot split the model over 4 ranks: it has 2 KV heads, and each rank needs whole ones "
            "(tensor-parallel sizes that work for this model: 1, 2)\n");
  const auto zero = run({"-p", "Hello", "-tp", "0"});
  EXPECT_NE(zero.exit_code, 0);
  EXPECT_THAT(zero.err, HasSubstr("--tensor-parallel: must be a number greater than 0, got 0"));
}

TEST_F(TensorParallelCli, OneRankRunsAsWithoutTheFlag) {
  const auto plain = run({"-p", "Hello", "--device", "cpu"});
  const auto one = run({"-p", "Hello", "--device", "cpu", "-tp", "1"});
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  ASSERT_EQ(one.exit_code, 0) << one.err;
  EXPECT_FALSE(one.out.empty());
  EXPECT_EQ(one.out, plain.out);
}

TEST_F(TensorParallelCli, AValueSpelledLikeTheFlagStaysAValue) {
  // "-tp" as the prompt is the prompt, not --tensor-parallel.
  const auto value = run({"-p", "-tp", "--device", "cpu"});
  const auto attached = run({"--prompt=-tp", "--device", "cpu"});
  ASSERT_EQ(value.exit_code, 0) << value.err;
  ASSERT_EQ(attached.exit_code, 0) << attached.err;
  EXPECT_EQ(value.out, attached.out);
  EXPECT_THAT(value.err, HasSubstr("prompt 3 tokens"));  // '-', 't', 'p' of the byte-level vocabulary
}

TEST_F(TensorParallelCli, HelpShowsTheFlagWithItsDefault) {
  const auto r = run_apr({"run", "--help"});
  ASSERT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("--tensor-parallel INT:POSITIVE=1"));
  EXPECT_THAT(r.out, HasSubstr("GPUs to split the model over, tensor parallelism (also -tp N)"));
}

}  // namespace
}  // namespace realizar
