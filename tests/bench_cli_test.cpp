// `apr bench` end to end on a tiny synth model: the tests asked for are the tests measured, with
// the runs the method asks for and figures that follow from the recorded times; --synth builds
// and caches its model; compare gates on a regression; bad input gets a one-line error.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

#include <nlohmann/json.hpp>

#include "backend/cpu/cpu_features.h"
#include "backend/cpu/kernels.h"
#include "test_support.h"

namespace realizar {
namespace {

using ::testing::HasSubstr;
using nlohmann::json;
using testing::run_apr;
using testing::TempDir;

class BenchCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    const auto tokenizer = testing::source_dir() / "tests/data/tokenizers/llama2/tokenizer.json";
    const auto r = run_apr({"synth", "tiny", "--tokenizer", tokenizer.string(), "-o", model(), "--type", "q8_0"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string model() { return (*dir_ / "tiny.gguf").string(); }
  static std::string path(const std::string& name) { return (*dir_ / name).string(); }

  static json bench_json(std::vector<std::string> args, const std::string& name) {
    args.insert(args.begin(), {"bench", model(), "--device", "cpu", "-t", "1", "--json", path(name)});
    const auto r = run_apr(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return json::parse(testing::read_file(path(name)));
  }

  static TempDir* dir_;
};
TempDir* BenchCli::dir_ = nullptr;

const json& result(const json& doc, const std::string& test) {
  for (const json& r : doc["results"]) {
    if (r["test"] == test) return r;
  }
  throw std::runtime_error("no result " + test);
}

TEST_F(BenchCli, MeasuresTheRequestedTestsWithTheRequestedRuns) {
  const json doc = bench_json({"-p", "16,32", "-n", "8", "--pg", "8,4", "-d", "0,16", "--parallel", "1,3",
                               "-r", "3", "--warmup", "2"},
                              "sweep.json");
  std::vector<std::string> names;
  for (const json& r : doc["results"]) names.push_back(r["test"]);
  EXPECT_THAT(names, ::testing::ElementsAre("pp16", "pp32", "tg8", "tg8 x3", "pp8+tg4", "pp16 @ d16",
                                            "pp32 @ d16", "tg8 @ d16", "tg8 x3 @ d16", "pp8+tg4 @ d16"));
  for (const json& r : doc["results"]) {
    const json& s = r["tokens_per_second"];
    ASSERT_EQ(r["seconds"].size(), 3u) << r["test"];
    EXPECT_EQ(r["warmup_runs"], 2);
    EXPECT_EQ(s["count"], 3);
    // Each sample is the test's tokens over its run's time.
    for (size_t i = 0; i < 3; ++i) {
      EXPECT_NEAR(s["samples"][i].get<double>(),
                  r["tokens"].get<double>() / r["seconds"][i].get<double>(), 1e-9 * s["samples"][i].get<double>());
    }
    EXPECT_GE(s["median"].get<double>(), s["min"].get<double>());
    EXPECT_LE(s["median"].get<double>(), s["max"].get<double>());
  }
  const json& x3 = result(doc, "tg8 x3");
  EXPECT_EQ(x3["tokens"], 24);
  EXPECT_EQ(x3["context_tokens"], 16);  // each sequence's own -p 16 prompt first
  EXPECT_NEAR(x3["per_sequence_tokens_per_second"].get<double>(),
              x3["tokens_per_second_mean"].get<double>() / 3, 1e-9);
  EXPECT_EQ(result(doc, "tg8 x3 @ d16")["context_tokens"], 16);
  const auto table = run_apr({"bench", model(), "--device", "cpu", "-t", "1", "-p", "8", "-n", "4",
                              "--parallel", "1,2", "-r", "1", "--warmup", "0"});
  EXPECT_THAT(table.out, HasSubstr("| bandwidth use | per sequence tok/s |"));
  EXPECT_EQ(result(doc, "pp8+tg4")["tokens"], 12);
  // Per-step latencies: 8 steps x 3 runs; the p50 step cannot be slower than the slowest run
  // spread over its steps allows (a run lasts at least as long as its steps).
  const json& tg = result(doc, "tg8");
  const auto seconds = tg["seconds"].get<std::vector<double>>();
  const double slowest_run_ms = 1e3 * *std::max_element(seconds.begin(), seconds.end());
  EXPECT_LE(tg["token_latency_ms"]["p50"].get<double>(), slowest_run_ms);
  EXPECT_TRUE(tg["ttft_ms"].is_null());
  EXPECT_TRUE(result(doc, "pp16")["token_latency_ms"].is_null());
  EXPECT_FALSE(result(doc, "pp16")["ttft_ms"].is_null());
}

TEST_F(BenchCli, BandwidthUseFollowsFromRateBytesAndBandwidth) {
  const json doc = bench_json({"-p", "0", "-n", "8", "--parallel", "1,2", "-r", "2"}, "bw.json");
  EXPECT_EQ(doc["backend"], "cpu");
  EXPECT_EQ(doc["backend_detail"], cpu::isa_name(cpu::active_kernels().isa));  // the kernel set
  EXPECT_EQ(doc["threads"], 1);
  const double bandwidth = doc["bandwidth"]["bytes_per_second"].get<double>();
  ASSERT_GT(bandwidth, 0);
  EXPECT_EQ(doc["copy_bandwidth_bytes_per_second"].get<double>(), bandwidth);
  // tiny: 2 layers, 2 KV heads of 16 dims, float16 keys and values: 2 * 2 * 32 * 2 bytes.
  EXPECT_EQ(doc["kv_bytes_per_token"], 256);
  for (const json& r : doc["results"]) {
    const int parallel = r["parallel"];
    const double steps_per_second = r["tokens_per_second_mean"].get<double>() / parallel;
    const double bytes = doc["weight_bytes_per_token"].get<double>() + parallel * 4.5 * 256;  // 1..8 cached
    EXPECT_DOUBLE_EQ(r["bytes_read_per_step"].get<double>(), bytes) << r["test"];
    EXPECT_NEAR(r["bandwidth_fraction"].get<double>(), steps_per_second * bytes / bandwidth, 1e-12) << r["test"];
  }
}

TEST_F(BenchCli, CvTargetRunsUntilPreciseOrTheCap) {
  const json capped = bench_json({"-p", "8", "-n", "0", "-r", "3", "--cv", "1e-12", "--max-repetitions", "6"}, "cv1.json");
  EXPECT_EQ(capped["results"][0]["tokens_per_second"]["count"], 6);
  EXPECT_EQ(capped["method"]["cv_target"], 1e-12);
  const json loose = bench_json({"-p", "8", "-n", "0", "-r", "3", "--cv", "10"}, "cv2.json");
  EXPECT_EQ(loose["results"][0]["tokens_per_second"]["count"], 3);
}

TEST_F(BenchCli, WritesCsvAndSvgAndImportsLlamaBench) {
  const auto lb = testing::source_dir() / "tests/data/bench/llama-bench.json";
  const auto r = run_apr({"bench", model(), "--device", "cpu", "-t", "1", "-p", "32", "-n", "8", "-r", "2",
                          "--csv", path("t.csv"), "--svg", path("t.svg"),
                          "--import-llama-bench", "cpp=" + lb.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("| test | tok/s median [CI] |"));
  EXPECT_THAT(r.out, HasSubstr(" cpp tok/s | ratio |"));
  EXPECT_THAT(r.out, HasSubstr("54.29 ± 1.85"));  // llama-bench's pp32 beside ours
  EXPECT_THAT(r.out, HasSubstr("**warning**: cpp measured a different model"));
  const std::string csv = testing::read_file(path("t.csv"));
  EXPECT_THAT(csv, HasSubstr("\nrealizar,pp32,32,0,0,1,2,"));
  EXPECT_THAT(csv, HasSubstr("\ncpp,pp32,32,0,0,1,2,54.29115,"));
  const std::string svg = testing::read_file(path("t.svg"));
  EXPECT_EQ(svg.rfind("<?xml", 0), 0u);
  EXPECT_THAT(svg, HasSubstr("<title>cpp: 54.29</title>"));
}

TEST_F(BenchCli, SynthModelsAreBuiltOnceAndCached) {
  TempDir home;
  setenv("REALIZAR_HOME", home.path().c_str(), 1);
  const std::vector<std::string> args = {"bench", "--synth", "tiny", "--type", "q8_0", "--device", "cpu",
                                         "-t", "1", "-p", "8", "-n", "0", "-r", "1", "--json", path("synth.json")};
  const auto first = run_apr(args);
  ASSERT_EQ(first.exit_code, 0) << first.err;
  const json doc = json::parse(testing::read_file(path("synth.json")));
  const json& synth = doc["model_file"]["synth"];
  EXPECT_EQ(synth["preset"], "tiny");
  EXPECT_EQ(synth["type"], "q8_0");
  const std::filesystem::path cached = synth["cache_path"].get<std::string>();
  EXPECT_EQ(cached.parent_path(), home.path() / "synth");
  EXPECT_EQ(cached.filename().string().rfind("tiny-q8_0-", 0), 0u);
  ASSERT_TRUE(std::filesystem::exists(cached));
  EXPECT_EQ(doc["model"], cached.string());
  const auto written = std::filesystem::last_write_time(cached);
  const auto second = run_apr(args);
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_EQ(std::filesystem::last_write_time(cached), written);  // reused, not rebuilt
  size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(home.path() / "synth")) files += e.is_regular_file();
  EXPECT_EQ(files, 1u);  // no partial file left behind
  unsetenv("REALIZAR_HOME");
}

TEST_F(BenchCli, CompareExitsWithOneOnARegression) {
  json before = bench_json({"-p", "8", "-n", "4", "-r", "6"}, "before.json");
  // The same run made 100 times slower: every rate scaled, so the intervals move apart (with six
  // runs the interval is the range, and a tiny model's runs on a busy machine can vary a lot).
  json after = before;
  for (json& r : after["results"]) {
    json& s = r["tokens_per_second"];
    for (const char* k : {"mean", "median", "min", "max"}) s[k] = s[k].get<double>() * 0.01;
    for (const char* k : {"low", "high"}) s["median_ci"][k] = s["median_ci"][k].get<double>() * 0.01;
  }
  std::ofstream(path("after.json")) << after.dump();
  const auto regressed = run_apr({"bench", "compare", path("before.json"), path("after.json")});
  EXPECT_EQ(regressed.exit_code, 1) << regressed.err;
  EXPECT_THAT(regressed.out, HasSubstr("| pp8 |"));
  EXPECT_THAT(regressed.out, HasSubstr("-99.0% | apart | **regression** |"));
  const auto same = run_apr({"bench", "compare", path("before.json"), path("before.json")});
  EXPECT_EQ(same.exit_code, 0) << same.err;
  EXPECT_THAT(same.out, HasSubstr("+0.0% | overlap | same within noise |"));
  const auto improved = run_apr({"bench", "compare", path("after.json"), path("before.json")});
  EXPECT_EQ(improved.exit_code, 0);
  EXPECT_THAT(improved.out, HasSubstr("improvement"));
}

TEST_F(BenchCli, BadInputGetsAOneLineError) {
  auto error = [](std::vector<std::string> args) {
    const auto r = run_apr(args);
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.exit_code, 2) << "internal error: " << r.err;  // not a crash or uncaught exception
    return r.err;
  };
  EXPECT_THAT(error({"bench"}), HasSubstr("give a MODEL file, --synth PRESET, or a subcommand"));
  EXPECT_THAT(error({"bench", model(), "--synth", "tiny"}), HasSubstr("a MODEL file or --synth, not both"));
  EXPECT_THAT(error({"bench", "--synth", "qwen9"}), HasSubstr("unknown synth preset 'qwen9'"));
  EXPECT_THAT(error({"bench", model(), "-p", "0", "-n", "0"}), HasSubstr("nothing to measure"));
  EXPECT_THAT(error({"bench", model(), "--pg", "8"}), HasSubstr("--pg: want PROMPT,GENERATED"));
  EXPECT_THAT(error({"bench", model(), "--pg", "8,x"}), HasSubstr("--pg: want PROMPT,GENERATED"));
  EXPECT_THAT(error({"bench", model(), "-p", "8,-1"}), HasSubstr("must be a number of at least 0, got -1"));
  EXPECT_THAT(error({"bench", model(), "--parallel", "0"}), HasSubstr("must be a number greater than 0, got 0"));
  EXPECT_THAT(error({"bench", model(), "--import-llama-bench", model()}), HasSubstr("not llama-bench output"));
  EXPECT_THAT(error({"bench", "/no/model.gguf"}), HasSubstr("/no/model.gguf"));
  EXPECT_THAT(error({"bench", "compare", model(), model()}), HasSubstr("not valid JSON"));
  std::ofstream(path("other.json")) << R"({"schema_version": 1, "kind": "elsewhere", "environment": {}})";
  EXPECT_THAT(error({"bench", "compare", path("other.json"), path("other.json")}),
              HasSubstr("kind is neither \"model\" nor \"serve\""));
  EXPECT_THAT(error({"bench", model(), "-p", "8", "-n", "0", "-r", "1", "--json", "/no/dir/x.json"}),
              HasSubstr("cannot write /no/dir/x.json"));
  EXPECT_THAT(error({"bench", "serve", "localhost:8080"}), HasSubstr("does not start with http:// or https://"));
}

}  // namespace
}  // namespace realizar
