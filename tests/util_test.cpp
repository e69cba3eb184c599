// Small utilities: SHA-256, the realizar home directory, progress formatting, byte sizes, counts,
// CPU limits.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "realizar/error.h"
#include "test_support.h"
#include "util/byte_size.h"
#include "util/counted.h"
#include "util/cpu_count.h"
#include "util/paths.h"
#include "util/progress.h"
#include "util/sha256.h"

namespace realizar {
namespace {

using ::testing::HasSubstr;

std::span<const uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

TEST(Sha256, MatchesTheFips180Examples) {
  EXPECT_EQ(sha256_hex(bytes_of("")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex(bytes_of("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  Sha256 pieces;  // the same message fed in two parts
  pieces.update(bytes_of("ab"));
  pieces.update(bytes_of("c"));
  EXPECT_EQ(pieces.hex_digest(), sha256_hex(bytes_of("abc")));
}

TEST(Sha256, OfAFileEqualsOfItsBytes) {
  testing::TempDir dir;
  std::string content(3 << 20, 'x');  // several read pieces
  content[12345] = 'y';
  testing::write_file(dir / "f.bin", content);
  EXPECT_EQ(sha256_file_hex(dir / "f.bin"), sha256_hex(bytes_of(content)));
  EXPECT_THAT([&] { sha256_file_hex(dir / "missing"); }, ::testing::ThrowsMessage<Error>(HasSubstr("cannot read")));
}

TEST(RealizarHome, IsTheVariableOrUnderHome) {
  const char* saved = std::getenv("REALIZAR_HOME");
  const std::string saved_value = saved ? saved : "";
  setenv("REALIZAR_HOME", "/tmp/somewhere", 1);
  EXPECT_EQ(realizar_home(), "/tmp/somewhere");
  setenv("REALIZAR_HOME", "", 1);
  EXPECT_EQ(realizar_home(), std::filesystem::path(std::getenv("HOME")) / ".cache" / "realizar");
  if (saved) setenv("REALIZAR_HOME", saved_value.c_str(), 1); else unsetenv("REALIZAR_HOME");
}

TEST(Progress, FormatsAmountsInDecimalUnits) {
  EXPECT_EQ(Progress::format_amount(17, Progress::Unit::Bytes), "17 B");
  EXPECT_EQ(Progress::format_amount(12'345, Progress::Unit::Bytes), "12 KB");
  EXPECT_EQ(Progress::format_amount(340'000'000, Progress::Unit::Bytes), "340.0 MB");
  EXPECT_EQ(Progress::format_amount(1'234'000'000, Progress::Unit::Bytes), "1.23 GB");
  EXPECT_EQ(Progress::format_amount(42, Progress::Unit::Items), "42");
}

// A note is a line of its own; off a terminal it never carries control codes.
TEST(Progress, NotesArePlainLinesOffATerminal) {
  testing::TempDir dir;
  const auto path = dir / "out.txt";
  std::FILE* out = std::fopen(path.c_str(), "w");
  ASSERT_NE(out, nullptr);
  {
    Progress progress("get", 10, Progress::Unit::Bytes, out);
    progress.note("apr: retrying");
    progress.update(10);
    progress.finish(/*always_report=*/true);
  }
  std::fclose(out);
  const std::string text = testing::read_file(path);
  EXPECT_THAT(text, ::testing::StartsWith("apr: retrying\nget: 100% 10 B / 10 B, "));
  EXPECT_EQ(text.find('\r'), std::string::npos);
}

TEST(Progress, QuickWorkPrintsNothingUnlessAskedAndPlainOutputHasNoControlCodes) {
  testing::TempDir dir;
  const auto path = dir / "out.txt";
  std::FILE* out = std::fopen(path.c_str(), "w");
  ASSERT_NE(out, nullptr);
  {
    Progress quiet("copy", 100, Progress::Unit::Bytes, out);
    quiet.update(100);
  }
  Progress reported("copy", 2'000'000, Progress::Unit::Bytes, out);
  reported.update(2'000'000);
  reported.finish(/*always_report=*/true);
  std::fclose(out);
  const std::string text = testing::read_file(path);
  EXPECT_THAT(text, ::testing::StartsWith("copy: 100% 2.0 MB / 2.0 MB, "));
  EXPECT_THAT(text, HasSubstr("total\n"));
  EXPECT_EQ(text.find('\r'), std::string::npos);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1);
}

TEST(CpuCount, ACgroupQuotaRoundsUpToWholeCpus) {
  EXPECT_EQ(cgroup_cpu_limit("200000 100000\n"), 2);
  EXPECT_EQ(cgroup_cpu_limit("150000 100000"), 2);  // docker --cpus 1.5
  EXPECT_EQ(cgroup_cpu_limit("1000 100000"), 1);     // never 0
  EXPECT_EQ(cgroup_cpu_limit("max 100000"), std::nullopt);
  for (const char* bad : {"", "max", "100000", "-1 100000", "x 100000", "200000 0", "200000 1e5", "2 3 4"}) {
    EXPECT_EQ(cgroup_cpu_limit(bad), std::nullopt) << bad;
  }
}

// The affinity mask `nproc` counts, capped by the cgroup's limit (which newer coreutils apply too):
// the default thread count of every command.
TEST(CpuCount, UsableCpusAreTheAffinityMaskWithinTheCgroupLimit) {
  std::FILE* nproc = popen("env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc 2>/dev/null", "r");
  ASSERT_NE(nproc, nullptr);
  int affinity = 0;
  const int read = std::fscanf(nproc, "%d", &affinity);
  pclose(nproc);
  if (read != 1) GTEST_SKIP() << "no nproc";
  EXPECT_GE(static_cast<int>(allowed_cpus().size()), affinity);  // nproc may have applied the limit
  EXPECT_EQ(usable_cpu_count(), std::min(affinity, process_cpu_limit().value_or(affinity)));
}

TEST(Counted, TheNounIsPluralExceptForOne) {
  EXPECT_EQ(counted(1, "thread"), "1 thread");
  EXPECT_EQ(counted(2, "thread"), "2 threads");
  EXPECT_EQ(counted(0, "outlier"), "0 outliers");
}

TEST(ByteSize, BinaryDecimalAndBareUnits) {
  EXPECT_EQ(parse_byte_size("1500000"), 1500000);
  EXPECT_EQ(parse_byte_size("512B"), 512);
  EXPECT_EQ(parse_byte_size("4GiB"), int64_t{4} << 30);
  EXPECT_EQ(parse_byte_size("512MiB"), int64_t{512} << 20);
  EXPECT_EQ(parse_byte_size("2G"), int64_t{2} << 30);
  EXPECT_EQ(parse_byte_size("2g"), int64_t{2} << 30);
  EXPECT_EQ(parse_byte_size("8MB"), 8'000'000);
  EXPECT_EQ(parse_byte_size("1.5KiB"), 1536);
  EXPECT_EQ(parse_byte_size("1TB"), 1'000'000'000'000);
  EXPECT_EQ(parse_byte_size("1T"), int64_t{1} << 40);
}

TEST(ByteSize, RefusesWhatIsNotAPositiveSize) {
  for (const char* bad : {"", "GiB", "4 GiB", "4XB", "-1", "0", "0.5", "nan", "inf", "9e30", "4GiBs"}) {
    try {
      parse_byte_size(bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr(fmt::format("'{}'", bad))) << bad;
    }
  }
}

}  // namespace
}  // namespace realizar
