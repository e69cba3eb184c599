#include "bench/llama_bench_import.h"

#include <charconv>
#include <fstream>
#include <regex>
#include <sstream>

#include "bench/bench.h"
#include "bench/report_json.h"
#include "realizar/error.h"

namespace realizar::bench {
namespace {

nlohmann::json field_or_null(const nlohmann::json& record, const char* key) {
  return record.contains(key) ? record[key] : nlohmann::json(nullptr);
}

int64_t count_field(const nlohmann::json& record, const char* key, const std::string& where) {
  if (!record.contains(key) || !record[key].is_number_integer() || record[key].get<int64_t>() < 0) {
    fail("{}: {} is missing or not a token count", where, key);
  }
  return record[key].get<int64_t>();
}

// One llama-bench record (an element of -o json, a line of -o jsonl) as one of our rows.
nlohmann::json result_from_record(const nlohmann::json& record, const std::string& where) {
  if (!record.is_object()) fail("{}: not a JSON object", where);
  const TestSpec test{.n_prompt = count_field(record, "n_prompt", where),
                      .n_gen = count_field(record, "n_gen", where),
                      .n_depth = record.contains("n_depth") ? count_field(record, "n_depth", where) : 0};
  if (test.n_prompt == 0 && test.n_gen == 0) fail("{}: n_prompt and n_gen are both 0", where);
  nlohmann::json rates;
  if (record.contains("samples_ts") && record["samples_ts"].is_array() &&
      !record["samples_ts"].empty()) {
    std::vector<double> samples;
    for (const auto& v : record["samples_ts"]) {
      if (!v.is_number() || !(v.get<double>() > 0)) fail("{}: samples_ts holds {}", where, v.dump());
      samples.push_back(v.get<double>());
    }
    rates = summary_json(samples);
  } else if (record.contains("avg_ts") && record["avg_ts"].is_number()) {
    rates = {{"mean", record["avg_ts"]}, {"stdev", record.value("stddev_ts", 0.0)}};
  } else {
    fail("{}: neither samples_ts nor avg_ts", where);
  }
  return {{"test", test.name()},
          {"n_prompt", test.n_prompt},
          {"n_gen", test.n_gen},
          {"n_depth", test.n_depth},
          {"threads", field_or_null(record, "n_threads")},
          {"tokens_per_second", rates}};
}

nlohmann::json baseline_from_records(const std::vector<nlohmann::json>& records,
                                     std::string_view source, std::string_view format,
                                     std::string_view name) {
  if (records.empty()) fail("{}: no llama-bench records", source);
  nlohmann::json results = nlohmann::json::array();
  for (size_t i = 0; i < records.size(); ++i) {
    results.push_back(result_from_record(records[i], fmt::format("{}: record {}", source, i + 1)));
  }
  const nlohmann::json& first = records.front();
  return {{"name", name},
          {"source", source},
          {"format", format},
          {"build_commit", field_or_null(first, "build_commit")},
          {"cpu_info", field_or_null(first, "cpu_info")},
          {"gpu_info", field_or_null(first, "gpu_info")},
          {"backends", field_or_null(first, "backends")},
          {"model", field_or_null(first, "model_type")},
          {"model_file", field_or_null(first, "model_filename")},
          {"model_size_bytes", field_or_null(first, "model_size")},
          {"threads", field_or_null(first, "n_threads")},
          {"date", field_or_null(first, "test_time")},
          {"results", results}};
}

nlohmann::json parse_json_text(std::string_view text, const std::string& where) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    fail("{}: not valid JSON ({})", where, e.what());
  }
}

int64_t parse_count(const std::string& text, const std::string& where) {
  int64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) {
    fail("{}: '{}' is not a whole number", where, text);
  }
  return value;
}

double parse_decimal(const std::string& text, const std::string& where) {
  double value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || !(value >= 0)) {
    fail("{}: '{}' is not a number of tokens per second", where, text);
  }
  return value;
}

std::vector<std::string> split_cells(const std::string& line) {
  std::vector<std::string> cells;
  std::string cell;
  for (size_t i = 1; i < line.size(); ++i) {  // line[0] is the leading '|'
    if (line[i] != '|') {
      cell += line[i];
      continue;
    }
    const size_t a = cell.find_first_not_of(' '), b = cell.find_last_not_of(' ');
    cells.push_back(a == std::string::npos ? "" : cell.substr(a, b - a + 1));
    cell.clear();
  }
  return cells;
}

// llama-bench -o md: a table with (at least) "test" and "t/s" columns, "mean ± stdev" in the
// latter, and a "build: COMMIT (NUMBER)" line after it.
nlohmann::json parse_markdown(std::string_view text, std::string_view source, std::string_view name) {
  std::istringstream in{std::string(text)};
  std::string line;
  std::vector<std::string> header;
  nlohmann::json results = nlohmann::json::array();
  nlohmann::json build_commit = nullptr, threads = nullptr, model = nullptr, backends = nullptr;
  const std::regex test_name(R"(^(?:pp(\d+))?(?:\+?tg(\d+))?(?: @ d(\d+))?$)");
  const std::regex rate(R"(^([0-9.]+(?:e[+-]?\d+)?)\s*(?:±\s*([0-9.]+(?:e[+-]?\d+)?))?$)");
  const std::regex build(R"(^build: (\S+))");
  std::smatch match;
  for (int number = 1; std::getline(in, line); ++number) {
    const std::string where = fmt::format("{}: line {}", source, number);
    if (std::regex_search(line, match, build)) build_commit = match[1].str();
    if (line.empty() || line[0] != '|') continue;
    std::vector<std::string> cells = split_cells(line);
    if (header.empty()) {
      header = cells;
      continue;
    }
    if (!cells.empty() && cells[0].find("---") != std::string::npos) continue;
    if (cells.size() != header.size()) fail("{}: {} cells, the header has {}", where, cells.size(), header.size());
    auto cell = [&](const char* column) -> const std::string* {
      for (size_t i = 0; i < header.size(); ++i) {
        if (header[i] == column) return &cells[i];
      }
      return nullptr;
    };
    const std::string* test_cell = cell("test");
    const std::string* rate_cell = cell("t/s");
    if (test_cell == nullptr || rate_cell == nullptr) fail("{}: the table has no test or t/s column", where);
    std::smatch t, r;
    if (!std::regex_match(*test_cell, t, test_name) || (!t[1].matched && !t[2].matched)) {
      fail("{}: test '{}' is not ppN, tgN or ppN+tgN (with @ dN)", where, *test_cell);
    }
    if (!std::regex_match(*rate_cell, r, rate)) fail("{}: t/s '{}' is not 'mean ± stdev'", where, *rate_cell);
    const TestSpec spec{.n_prompt = t[1].matched ? parse_count(t[1].str(), where) : 0,
                        .n_gen = t[2].matched ? parse_count(t[2].str(), where) : 0,
                        .n_depth = t[3].matched ? parse_count(t[3].str(), where) : 0};
    nlohmann::json row_threads = nullptr;
    if (const std::string* th = cell("threads")) row_threads = parse_count(*th, where);
    if (threads.is_null()) threads = row_threads;
    if (model.is_null() && cell("model")) model = *cell("model");
    if (backends.is_null() && cell("backend")) backends = *cell("backend");
    results.push_back({{"test", spec.name()},
                       {"n_prompt", spec.n_prompt},
                       {"n_gen", spec.n_gen},
                       {"n_depth", spec.n_depth},
                       {"threads", row_threads},
                       {"tokens_per_second",
                        {{"mean", parse_decimal(r[1].str(), where)},
                         {"stdev", r[2].matched ? parse_decimal(r[2].str(), where) : 0.0}}}});
  }
  if (results.empty()) fail("{}: no llama-bench table rows", source);
  return {{"name", name},         {"source", source},       {"format", "md"},
          {"build_commit", build_commit}, {"cpu_info", nullptr}, {"gpu_info", nullptr},
          {"backends", backends}, {"model", model},         {"model_file", nullptr},
          {"model_size_bytes", nullptr}, {"threads", threads}, {"date", nullptr},
          {"results", results}};
}

}  // namespace

nlohmann::json parse_llama_bench(std::string_view text, std::string_view source,
                                 std::string_view name) {
  const size_t start = text.find_first_not_of(" \t\r\n");
  if (start == std::string_view::npos) fail("{}: empty file", source);
  const char first = text[start];
  if (first == '[') {
    const nlohmann::json doc = parse_json_text(text, std::string(source));
    return baseline_from_records(doc.get<std::vector<nlohmann::json>>(), source, "json", name);
  }
  if (first == '{') {
    std::vector<nlohmann::json> records;
    std::istringstream in{std::string(text)};
    std::string line;
    for (int number = 1; std::getline(in, line); ++number) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      records.push_back(parse_json_text(line, fmt::format("{}: line {}", source, number)));
    }
    return baseline_from_records(records, source, "jsonl", name);
  }
  if (first == '|') return parse_markdown(text, source, name);
  fail("{}: not llama-bench output (-o json, -o jsonl or -o md)", source);
}

nlohmann::json import_llama_bench(const std::filesystem::path& path, std::string_view name) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("--import-llama-bench: cannot read {}", path.string());
  std::ostringstream text;
  text << in.rdbuf();
  return parse_llama_bench(text.str(), path.string(), name);
}

}  // namespace realizar::bench
