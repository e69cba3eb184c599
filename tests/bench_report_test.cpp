// The parts of `apr bench` that read and write: the SSE parser, llama-bench import (real
// captured outputs in tests/data/bench/), the document check, Markdown and CSV, `bench compare`'s
// regression rule, test names and KV/bandwidth arithmetic, prompts of exact token lengths, and
// the serve client's URL and request handling.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sstream>

#include "bench/bench.h"
#include "bench/compare.h"
#include "bench/llama_bench_import.h"
#include "bench/openai_client.h"
#include "bench/prompt_text.h"
#include "bench/report_json.h"
#include "bench/report_text.h"
#include "bench/serve_bench.h"
#include "bench/sse.h"
#include "realizar/error.h"
#include "realizar/tokenizer.h"
#include "test_support.h"

namespace realizar::bench {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using nlohmann::json;

using realizar::testing::error_of;

// ---- SSE -----------------------------------------------------------------------------------------

std::vector<std::string> events_of(const std::vector<std::string>& pieces, bool finish = true) {
  std::vector<std::string> events;
  SseParser parser([&](std::string_view data) { events.emplace_back(data); });
  for (const std::string& p : pieces) parser.feed(p);
  if (finish) parser.finish();
  return events;
}

TEST(BenchSse, EventsSurviveAnySplitOfTheStream) {
  const std::string stream =
      ": keep-alive comment\r\n"
      "data: {\"a\":1}\r\n\r\n"
      "event: message\nid: 7\ndata: {\"b\":2}\n\n"
      "data:no-space\n\n"
      "data: line one\ndata: line two\n\n"
      "data: [DONE]\n\n";
  const std::vector<std::string> want = {"{\"a\":1}", "{\"b\":2}", "no-space", "line one\nline two",
                                         "[DONE]"};
  EXPECT_EQ(events_of({stream}), want);
  // Every split point, including inside "\r\n".
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    EXPECT_EQ(events_of({stream.substr(0, cut), stream.substr(cut)}), want) << "cut at " << cut;
  }
  // One byte at a time.
  std::vector<std::string> bytes;
  for (char c : stream) bytes.emplace_back(1, c);
  EXPECT_EQ(events_of(bytes), want);
}

TEST(BenchSse, AnEventIsReportedOnlyWhenComplete) {
  EXPECT_THAT(events_of({"data: {\"x\":1}\n"}, false), ElementsAre());
  EXPECT_THAT(events_of({"data: {\"x\":1}\n"}, true), ElementsAre("{\"x\":1}"));  // closed stream
  EXPECT_THAT(events_of({"data: {\"x\"", ":1}"}, true), ElementsAre("{\"x\":1}"));
  EXPECT_THAT(events_of({"\n\n: only a comment\n\n"}), ElementsAre());
}

// ---- llama-bench import ----------------------------------------------------------------------------

std::filesystem::path fixture(const char* name) {
  return testing::source_dir() / "tests/data/bench" / name;
}

std::vector<std::string> test_names(const json& baseline) {
  std::vector<std::string> names;
  for (const json& r : baseline["results"]) names.push_back(r["test"]);
  return names;
}

TEST(BenchLlamaImport, JsonGivesEveryTestWithItsSamples) {
  const json b = import_llama_bench(fixture("llama-bench.json"), "llama.cpp");
  EXPECT_EQ(b["name"], "llama.cpp");
  EXPECT_EQ(b["format"], "json");
  EXPECT_EQ(b["build_commit"], "d32676d77");
  EXPECT_EQ(b["threads"], 2);
  EXPECT_EQ(b["model"], "qwen2 1B Q4_K - Medium");
  EXPECT_EQ(b["model_size_bytes"], 391859712);
  EXPECT_THAT(test_names(b), ElementsAre("pp32", "tg8", "pp32+tg8", "pp32 @ d64", "tg8 @ d64",
                                         "pp32+tg8 @ d64"));
  // The first record's samples_ts are [55.6015, 52.9808]; llama-bench's own avg_ts is 54.291166
  // and stddev_ts 1.853154, which our summary of the samples must reproduce up to the rounding of
  // the printed samples (six significant figures: relative 1e-6 each, 1e-4 for the spread).
  const json& pp = b["results"][0]["tokens_per_second"];
  EXPECT_THAT(pp["samples"].get<std::vector<double>>(), ElementsAre(55.6015, 52.9808));
  EXPECT_NEAR(pp["mean"].get<double>(), 54.291166, 54.29 * 1e-6);
  EXPECT_NEAR(pp["stdev"].get<double>(), 1.853154, 1e-4);
  EXPECT_EQ(pp["count"], 2);
  EXPECT_EQ(b["results"][3]["n_depth"], 64);
}

TEST(BenchLlamaImport, MarkdownAndJsonlOfOneRunAgree) {
  const json md = import_llama_bench(fixture("llama-bench.md"), "md");
  const json jl = import_llama_bench(fixture("llama-bench.jsonl"), "jl");
  EXPECT_EQ(md["format"], "md");
  EXPECT_EQ(jl["format"], "jsonl");
  EXPECT_EQ(md["build_commit"], "d32676d77");
  EXPECT_EQ(md["threads"], 2);
  ASSERT_EQ(test_names(md), test_names(jl));
  for (size_t i = 0; i < md["results"].size(); ++i) {
    const json& a = md["results"][i]["tokens_per_second"];
    const json& b = jl["results"][i]["tokens_per_second"];
    // The table prints two decimals of the same mean and stdev.
    EXPECT_NEAR(a["mean"].get<double>(), b["mean"].get<double>(), 0.005) << i;
    EXPECT_NEAR(a["stdev"].get<double>(), b["stdev"].get<double>(), 0.005) << i;
    EXPECT_FALSE(a.contains("median_ci"));  // the table has no samples
    EXPECT_TRUE(b.contains("median_ci"));
  }
}

TEST(BenchLlamaImport, MalformedInputIsRefusedWithItsPlace) {
  EXPECT_THAT(error_of([] { parse_llama_bench("", "f", "x"); }), HasSubstr("f: empty file"));
  EXPECT_THAT(error_of([] { parse_llama_bench("model,size\n", "f.csv", "x"); }),
              HasSubstr("f.csv: not llama-bench output (-o json, -o jsonl or -o md)"));
  EXPECT_THAT(error_of([] { parse_llama_bench("[{\"n_gen\": 8, \"avg_ts\": 3}]", "f", "x"); }),
              HasSubstr("f: record 1: n_prompt is missing"));
  EXPECT_THAT(error_of([] { parse_llama_bench("[{\"n_prompt\": 0, \"n_gen\": 8}]", "f", "x"); }),
              HasSubstr("neither samples_ts nor avg_ts"));
  EXPECT_THAT(error_of([] { parse_llama_bench("[{\"n_prompt\": 0, \"n_gen\": 8, \"samples_ts\": [1, -2]}]", "f", "x"); }),
              HasSubstr("samples_ts holds -2"));
  EXPECT_THAT(error_of([] { parse_llama_bench("[{\"n_prompt\": 1,", "f", "x"); }), HasSubstr("f: not valid JSON"));
  EXPECT_THAT(error_of([] { parse_llama_bench("{\"n_prompt\": 1, \"n_gen\": 0, \"avg_ts\": 2}\n{oops\n", "f", "x"); }),
              HasSubstr("f: line 2: not valid JSON"));
  const std::string header = "| model | test | t/s |\n| --- | ---: | ---: |\n";
  EXPECT_THAT(error_of([&] { parse_llama_bench(header + "| m | pp9 | fast |\n", "t.md", "x"); }),
              HasSubstr("t.md: line 3: t/s 'fast' is not 'mean ± stdev'"));
  EXPECT_THAT(error_of([&] { parse_llama_bench(header + "| m | embed | 1.0 ± 0.1 |\n", "t.md", "x"); }),
              HasSubstr("test 'embed' is not ppN, tgN or ppN+tgN"));
  EXPECT_THAT(error_of([&] { parse_llama_bench(header + "| m | pp9 |\n", "t.md", "x"); }),
              HasSubstr("2 cells, the header has 3"));
  EXPECT_THAT(error_of([&] { parse_llama_bench(header, "t.md", "x"); }), HasSubstr("no llama-bench table rows"));
  EXPECT_THAT(error_of([] { import_llama_bench("/no/such/file.json", "x"); }), HasSubstr("cannot read /no/such/file.json"));
}

// ---- a document to render ------------------------------------------------------------------------

json summary_of(std::vector<double> samples) { return summary_json(samples); }

json environment() {
  return {{"realizar", {{"version", "0.1.0"}, {"git_commit", std::string(40, 'a')}, {"git_dirty", false},
                        {"build_type", "Release"}, {"compiler", "GNU 12"}, {"flags", "-O3"}, {"options", ""},
                        {"cuda_architectures", ""}}},
          {"host", {{"cpu_model", "Test CPU"}, {"logical_cpus", 2}, {"memory_bytes", 1 << 30}, {"os", "Linux"}}},
          {"gpu", nullptr},
          {"date", "2026-12-01T00:00:00Z"}};
}

json model_doc(const std::vector<std::pair<std::string, std::vector<double>>>& rows) {
  json results = json::array();
  for (const auto& [test, samples] : rows) {
    const json s = summary_of(samples);
    results.push_back({{"test", test}, {"n_prompt", test.rfind("pp", 0) == 0 ? 512 : 0},
                       {"n_gen", test.rfind("tg", 0) == 0 ? 128 : 0}, {"n_depth", 0}, {"parallel", 1},
                       {"tokens_per_second", s}, {"ttft_ms", nullptr},
                       {"token_latency_ms", {{"p50", 20.0}, {"p95", 25.0}, {"p99", 30.0}, {"mean", 21.0}}},
                       {"bandwidth_fraction", 0.5}});
  }
  return {{"schema_version", 1}, {"kind", "model"}, {"environment", environment()},
          {"model_file", {{"file_name", "m.gguf"}, {"architecture", "qwen2"}, {"parameters", 5e8},
                          {"file_size_bytes", 4e8}, {"tensor_bytes", 4e8}, {"header_sha256", std::string(64, 'b')},
                          {"quant_mix", json::array({{{"type", "Q4_K"}, {"tensors", 100}, {"bytes", 3e8}},
                                                     {{"type", "Q6_K"}, {"tensors", 20}, {"bytes", 1e8}}})}}},
          {"backend", "cpu"}, {"threads", 2}, {"weight_bytes_per_token", 4e8}, {"kv_bytes_per_token", 12288},
          {"bandwidth", {{"bytes_per_second", 4e10}, {"method", "host read"}}},
          {"method", {{"warmup", 1}, {"repetitions", 5}, {"cv_target", 0.0}, {"max_repetitions", 50}}},
          {"results", results}, {"baselines", json::array()}};
}

TEST(BenchReport, MarkdownShowsSpreadIntervalsBaselinesAndRatios) {
  json doc = model_doc({{"pp512", {100, 102, 98, 101, 99}}, {"tg128", {40, 41, 39, 40, 140}}});
  doc["baselines"].push_back({{"name", "llama.cpp"}, {"source", "lb.json"}, {"format", "json"},
                              {"build_commit", "d32676d77"}, {"cpu_info", "Test CPU"}, {"backends", "CPU"},
                              {"threads", 4}, {"model_size_bytes", 4e8},
                              {"results", json::array({{{"test", "tg128"}, {"tokens_per_second", {{"mean", 30.0}, {"stdev", 1.0}}}}})}});
  const std::string md = markdown_report(doc);
  EXPECT_THAT(md, HasSubstr("| pp512 | 100.0 [98.00, 102.0] | 100.0 ± 1.6 | 1.6% | 5 |"));
  EXPECT_THAT(md, HasSubstr("| tg128 | 40.00 [39.00, 140.0] | 60.00 ± 44.73 | 74.5% | 5 (1 outlier: #5) | 20.00 / 25.00 / 30.00 | 50.0% | 30.00 ± 1.00 | 2.00× |"));
  EXPECT_THAT(md, HasSubstr("| pp512 |"));
  EXPECT_THAT(md, HasSubstr("– | – |"));  // no baseline row for pp512
  EXPECT_THAT(md, HasSubstr("5 runs: 93.8%"));
  EXPECT_THAT(md, HasSubstr("- method: 1 warm-up run discarded, then 5 measured runs per test;"));
  EXPECT_THAT(md, HasSubstr("**warning**: llama.cpp ran on 4 threads, realizar on 2"));
  EXPECT_THAT(md, HasSubstr("Q4_K 75.0%, Q6_K 25.0%"));
}

TEST(BenchReport, CsvHasOneRowPerResultAndQuotesFields) {
  json doc = model_doc({{"pp512", {100, 102}}, {"tg128", {40, 41}}});
  doc["baselines"].push_back({{"name", "llama.cpp, \"cpu\""}, {"results", json::array({{{"test", "tg128"}, {"n_prompt", 0},
                              {"n_gen", 128}, {"n_depth", 0}, {"tokens_per_second", {{"mean", 30.0}, {"stdev", 1.0}}}}})}});
  const std::string csv = csv_report(doc);
  std::istringstream in(csv);
  std::string line;
  std::vector<std::string> lines;
  while (std::getline(in, line)) lines.push_back(line);
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0].rfind("engine,test,n_prompt,n_gen,n_depth,parallel,runs,mean_tok_s", 0), 0u);
  EXPECT_EQ(lines[1].rfind("realizar,pp512,512,0,0,1,2,101,", 0), 0u);
  EXPECT_EQ(lines[3].rfind("\"llama.cpp, \"\"cpu\"\"\",tg128,0,128,0,1,,30,", 0), 0u);
  const auto commas = [](const std::string& s) { return std::count(s.begin(), s.end(), ','); };
  EXPECT_EQ(commas(lines[1]), commas(lines[0]));
}

TEST(BenchReport, NumbersKeepFourSignificantFigures) {
  EXPECT_EQ(format_number(98832.4), "98832");
  EXPECT_EQ(format_number(164.27), "164.3");
  EXPECT_EQ(format_number(45.281), "45.28");
  EXPECT_EQ(format_number(3.14159), "3.142");
  EXPECT_EQ(format_number(0.0), "0");
}

TEST(BenchReport, DocumentsAreCheckedBeforeRendering) {
  EXPECT_THAT(error_of([] { check_document(json::array(), "x.json"); }), HasSubstr("x.json: not an apr bench result"));
  EXPECT_THAT(error_of([] { check_document({{"schema_version", 2}, {"kind", "model"}}, "x.json"); }),
              HasSubstr("schema_version is not 1"));
  json doc = model_doc({{"pp512", {1, 2}}});
  doc["results"][0].erase("tokens_per_second");
  EXPECT_THAT(error_of([&] { check_document(doc, "x.json"); }), HasSubstr("lacks test or tokens_per_second"));
  EXPECT_THAT(error_of([] { check_document({{"schema_version", 1}, {"kind", "serve"}, {"environment", json::object()}}, "s.json"); }),
              HasSubstr("no servers"));
}

// ---- compare -------------------------------------------------------------------------------------

TEST(BenchCompare, SlowerByMoreThanTheThresholdWithIntervalsApartIsARegression) {
  // Seven runs each: the interval of the median is [x(1), x(7)] at 98.4%.
  const json before = model_doc({{"pp512", {100, 101, 99, 100, 102, 98, 100}},
                                 {"tg128", {50, 51, 49, 50, 50, 51, 49}},
                                 {"tg32", {10, 10.1, 9.9, 10, 10, 10.2, 9.8}}});
  const json after = model_doc({{"pp512", {90, 91, 89, 90, 92, 88, 90}},      // -10%, apart
                                {"tg128", {48, 52, 46, 47, 50, 49, 48}},      // -3%, overlapping
                                {"tg32", {11, 11.1, 10.9, 11, 11, 11.2, 10.8}}});  // +10%
  const Comparison c = compare_documents(before, after);
  ASSERT_EQ(c.rows.size(), 3u);
  std::map<std::string, ComparisonRow> rows;
  for (const ComparisonRow& r : c.rows) rows[r.key] = r;
  EXPECT_TRUE(rows["pp512"].regression);
  EXPECT_FALSE(rows["pp512"].intervals_overlap);
  EXPECT_FALSE(rows["tg128"].regression);
  EXPECT_TRUE(rows["tg128"].intervals_overlap);
  EXPECT_TRUE(rows["tg32"].improvement);
  EXPECT_TRUE(c.regressed());
  const std::string md = comparison_markdown(c, "a.json", "b.json");
  EXPECT_THAT(md, HasSubstr("| pp512 | 100.0 | 90.00 | -10.0% | apart | **regression** |"));
  EXPECT_THAT(md, HasSubstr("| tg128 | 50.00 | 48.57 | -2.9% | overlap | same within noise |"));
  EXPECT_THAT(md, HasSubstr("regression is worse by more than 5%"));

  // Apart but within the threshold: not a regression.
  const json slightly = model_doc({{"pp512", {97, 97.1, 96.9, 97, 97, 97.2, 96.8}}});
  EXPECT_FALSE(compare_documents(model_doc({{"pp512", {100, 100.1, 99.9, 100, 100, 100.2, 99.8}}}), slightly).regressed());
}

TEST(BenchCompare, RowsWithoutIntervalsAreNotJudgedAndOneSidedRowsAreListed) {
  const json before = model_doc({{"pp512", {100}}, {"tg128", {50, 50}}});
  const json after = model_doc({{"pp512", {10}}, {"tg64", {50, 50}}});
  const Comparison c = compare_documents(before, after);
  ASSERT_EQ(c.rows.size(), 1u);
  EXPECT_FALSE(c.rows[0].have_intervals);  // one run has no interval
  EXPECT_FALSE(c.regressed());
  EXPECT_THAT(c.only_before, ElementsAre("tg128"));
  EXPECT_THAT(c.only_after, ElementsAre("tg64"));
  EXPECT_THAT(comparison_markdown(c, "a", "b"), HasSubstr("no intervals to judge by"));
  json serve = {{"kind", "serve"}, {"servers", json::array()}};
  EXPECT_THAT(error_of([&] { compare_documents(before, serve); }),
              HasSubstr("cannot compare a model run with a serve run"));
}

// ---- tests, KV bytes, bandwidth use --------------------------------------------------------------

TEST(BenchPlan, TestsAreNamedAndOrderedLikeLlamaBench) {
  BenchOptions o;
  o.prompt_tokens = {512, 0};
  o.generate_tokens = {128};
  o.prompt_generate = {{512, 128}};
  o.depths = {0, 4096};
  o.parallel = {1, 8};
  std::vector<std::string> names;
  for (const TestSpec& t : plan_tests(o)) names.push_back(t.name());
  EXPECT_THAT(names, ElementsAre("pp512", "tg128", "tg128 x8", "pp512+tg128", "pp512 @ d4096",
                                 "tg128 @ d4096", "tg128 x8 @ d4096", "pp512+tg128 @ d4096"));
  const std::vector<TestSpec> tests = plan_tests(o);
  EXPECT_EQ(tests[2].context_before(), 512);  // each sequence's own prompt first
  EXPECT_EQ(tests[2].tokens(), 128 * 8);
  EXPECT_EQ(tests[6].context_before(), 4096);
  // x8 at depth 4096: 8 x (4096 + 128 + 8 -> 4288 rounded to 64) tokens; pp512+tg128 at depth
  // 4096 is the longest sequence (4744 -> 4800).
  const BackendOptions sizes = backend_options(tests, 3);
  EXPECT_EQ(sizes.cache_slots, 8 * 4288);
  EXPECT_EQ(sizes.max_sequence_length, 4800);
  EXPECT_EQ(sizes.threads, 3);

  BenchOptions none;
  none.prompt_tokens = {0};
  none.generate_tokens = {0};
  EXPECT_THAT(error_of([&] { plan_tests(none); }), HasSubstr("nothing to measure"));
  BenchOptions bad;
  bad.parallel = {0};
  EXPECT_THAT(error_of([&] { plan_tests(bad); }), HasSubstr("--parallel wants sequence counts of at least 1, got 0"));
}

TEST(BenchPlan, DecodeReadsTheWeightsOnceAndEachSequencesCache) {
  // tg4 from an empty cache reads 1, 2, 3, 4 cached tokens: 2.5 on average.
  const TestSpec tg{.n_gen = 4};
  EXPECT_DOUBLE_EQ(decode_bytes_per_step(tg, 1000, 10), 1000 + 2.5 * 10);
  // Two sequences after 100-token prompts: 101..104 each, 102.5 on average, twice.
  const TestSpec x2{.n_gen = 4, .parallel = 2, .sequence_prompt = 100};
  EXPECT_DOUBLE_EQ(decode_bytes_per_step(x2, 1000, 10), 1000 + 2 * 102.5 * 10);
}

// ---- prompts -------------------------------------------------------------------------------------

TEST(BenchPrompts, TextsEncodeToExactlyThePlannedLength) {
  for (const char* name : {"qwen2", "llama2"}) {
    const Tokenizer tokenizer(load_hf_tokenizer(
        testing::source_dir() / "tests/data/tokenizers" / name / "tokenizer.json", std::nullopt));
    const PromptMaker maker(&tokenizer, 42);
    for (int64_t tokens : {1, 2, 7, 128, 1000}) {
      const std::string text = maker.make(tokens, static_cast<int>(tokens));
      EXPECT_EQ(static_cast<int64_t>(tokenizer.encode(text, false, false).size()), tokens)
          << name << " " << tokens << ": " << text.substr(0, 80);
    }
    EXPECT_EQ(maker.make(64, 3), maker.make(64, 3));  // fixed by seed and index
    EXPECT_NE(maker.make(64, 3), maker.make(64, 4));
  }
  const PromptMaker words(nullptr, 1);
  const std::string text = words.make(50, 0);
  EXPECT_EQ(std::count(text.begin(), text.end(), ' '), 49);  // 50 words
  EXPECT_THAT(error_of([&] { words.make(0, 0); }), HasSubstr("at least 1 token"));
}

// ---- serve client --------------------------------------------------------------------------------

TEST(BenchServeClient, UrlsAndTargets) {
  EXPECT_EQ(normalize_base_url("http://127.0.0.1:8080/v1/"), "http://127.0.0.1:8080");
  EXPECT_EQ(normalize_base_url("https://host"), "https://host");
  EXPECT_THAT(error_of([] { normalize_base_url("127.0.0.1:8080"); }),
              HasSubstr("does not start with http:// or https://"));
  const ServeTarget named = parse_serve_target("llama.cpp=http://127.0.0.1:8081/v1", "baseline");
  EXPECT_EQ(named.name, "llama.cpp");
  EXPECT_EQ(named.url, "http://127.0.0.1:8081");
  EXPECT_EQ(named.role, "baseline");
  EXPECT_EQ(parse_serve_target("http://h:1/?a=b", "subject").name, "h:1/?a=b");
  EXPECT_THAT(error_of([] { parse_serve_target("=http://h:1", "subject"); }), HasSubstr("name before '=' is empty"));
  EXPECT_THAT(error_of([] { parse_api("responses"); }), HasSubstr("want completions or chat, got 'responses'"));
}

TEST(BenchServeClient, RequestBodiesAskForAStreamWithUsage) {
  CompletionRequest r;
  r.model = "m";
  r.prompt = "hello there";
  r.max_tokens = 7;
  json body = request_body(r);
  EXPECT_EQ(body["prompt"], "hello there");
  EXPECT_EQ(body["max_tokens"], 7);
  EXPECT_EQ(body["stream"], true);
  EXPECT_EQ(body["stream_options"]["include_usage"], true);
  EXPECT_EQ(body["ignore_eos"], true);
  EXPECT_EQ(body["temperature"], 0.0);
  r.api = Api::Chat;
  r.ignore_eos = false;
  body = request_body(r);
  EXPECT_FALSE(body.contains("prompt"));
  EXPECT_EQ(body["messages"][0]["role"], "user");
  EXPECT_EQ(body["messages"][0]["content"], "hello there");
  EXPECT_FALSE(body.contains("ignore_eos"));
}

TEST(BenchServeClient, AServerThatIsNotThereIsAFailedRecordAndAClearCheck) {
  // Port 9 (discard) on loopback: nothing listens there in a test environment.
  CompletionRequest r;
  r.model = "m";
  r.prompt = "x";
  r.timeout_seconds = 5;
  const RequestRecord rec = stream_completion("http://127.0.0.1:9", r, WorkloadClock::now());
  EXPECT_FALSE(rec.ok());
  EXPECT_THAT(rec.error, HasSubstr("127.0.0.1"));
  EXPECT_GE(rec.end_time, rec.send_time);
  EXPECT_THAT(error_of([] { list_models("http://127.0.0.1:9", 5); }),
              HasSubstr("cannot reach http://127.0.0.1:9/v1/models"));
}

}  // namespace
}  // namespace realizar::bench
