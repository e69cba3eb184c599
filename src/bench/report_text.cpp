#include "bench/report_text.h"

#include <cmath>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "realizar/error.h"
#include "util/counted.h"

namespace realizar::bench {
namespace {

using nlohmann::json;

std::string text_or(const json& value, const std::string& fallback) {
  return value.is_string() ? value.get<std::string>() : fallback;
}

std::string bytes_text(double bytes) {
  if (bytes >= 1e9) return fmt::format("{:.2f} GB", bytes / 1e9);
  if (bytes >= 1e6) return fmt::format("{:.1f} MB", bytes / 1e6);
  if (bytes >= 1e3) return fmt::format("{:.1f} KB", bytes / 1e3);
  return fmt::format("{:.0f} B", bytes);
}

std::string percent(double fraction) { return fmt::format("{:.1f}%", 100 * fraction); }

std::string build_line(const json& env) {
  const json& r = env["realizar"];
  const std::string commit = text_or(r["git_commit"], "unknown");
  return fmt::format("- realizar {}, commit {}{}, {} build ({}; flags `{}`; {})\n",
                     text_or(r["version"], "?"), commit.substr(0, 12),
                     r.value("git_dirty", false) ? " with uncommitted changes" : "",
                     text_or(r["build_type"], "?"), text_or(r["compiler"], "?"),
                     text_or(r["flags"], ""), text_or(r["options"], ""));
}

std::string host_line(const json& env) {
  const json& h = env["host"];
  std::string line = fmt::format("- host: {}, {} logical CPUs", text_or(h["cpu_model"], "unknown"),
                                 h.value("logical_cpus", 0));
  if (h["memory_bytes"].is_number()) line += ", " + bytes_text(h["memory_bytes"].get<double>()) + " memory";
  line += fmt::format(", {}", text_or(h["os"], "unknown OS"));
  const json& gpu = env["gpu"];
  if (gpu.is_null()) return line + "; built without CUDA\n";
  if (gpu["devices"].empty()) return line + "; no GPU\n";
  for (const json& d : gpu["devices"]) {
    line += fmt::format("; GPU {}: {} ({}, compute {})", d["index"].get<int>(),
                        d["name"].get<std::string>(), bytes_text(d["memory_bytes"].get<double>()),
                        d["compute_capability"].get<std::string>());
  }
  line += fmt::format(", CUDA driver {}, runtime {}", text_or(gpu["driver_version"], "?"),
                      text_or(gpu["runtime_version"], "?"));
  if (gpu.contains("kernel_driver_version") && gpu["kernel_driver_version"].is_string()) {
    line += ", kernel driver " + gpu["kernel_driver_version"].get<std::string>();
  }
  return line + "\n";
}

std::string model_line(const json& m) {
  std::string mix;
  const double total = m["tensor_bytes"].get<double>();
  for (const json& share : m["quant_mix"]) {
    if (!mix.empty()) mix += ", ";
    mix += fmt::format("{} {}", share["type"].get<std::string>(),
                       percent(total > 0 ? share["bytes"].get<double>() / total : 0));
  }
  return fmt::format("- model: `{}` ({}, {:.1f} M parameters, {}; {} of the tensor bytes; header "
                     "SHA-256 {})\n",
                     m["file_name"].get<std::string>(), m["architecture"].get<std::string>(),
                     m["parameters"].get<double>() / 1e6,
                     bytes_text(m["file_size_bytes"].get<double>()), mix,
                     text_or(m["header_sha256"], "unreadable").substr(0, 16));
}

// "164.3 [160.1, 170.2]" from a summary with samples, "164.3" from a mean-only one.
std::string median_cell(const json& s) {
  if (!s.contains("median")) return "–";
  return fmt::format("{} [{}, {}]", format_number(s["median"].get<double>()),
                     format_number(s["median_ci"]["low"].get<double>()),
                     format_number(s["median_ci"]["high"].get<double>()));
}

// "164.3 ± 8.8": the spread with as many decimals as the mean.
std::string mean_cell(const json& s) {
  const std::string mean = format_number(s["mean"].get<double>());
  const size_t point = mean.find('.');
  const int decimals = point == std::string::npos ? 0 : static_cast<int>(mean.size() - point - 1);
  return fmt::format("{} ± {:.{}f}", mean, s.value("stdev", 0.0), decimals);
}

std::string runs_cell(const json& s) {
  if (!s.contains("count")) return "–";
  std::string cell = std::to_string(s["count"].get<int64_t>());
  const json& outliers = s["outliers"];
  if (!outliers.empty()) {
    std::string which;
    for (const json& i : outliers) which += (which.empty() ? "#" : ", #") + std::to_string(i.get<int64_t>() + 1);
    cell += fmt::format(" ({}: {})", counted(static_cast<int64_t>(outliers.size()), "outlier"), which);
  }
  return cell;
}

std::string latency_cell(const json& p) {
  if (!p.is_object()) return "–";
  return fmt::format("{} / {} / {}", format_number(p["p50"].get<double>()),
                     format_number(p["p95"].get<double>()), format_number(p["p99"].get<double>()));
}

const json* find_result(const json& results, const std::string& test) {
  for (const json& r : results) {
    if (r["test"].get<std::string>() == test) return &r;
  }
  return nullptr;
}

std::string ratio_text(double ours, double theirs) {
  return theirs > 0 ? fmt::format("{:.2f}×", ours / theirs) : "–";
}

// Notes on how to read the interval column: the levels the rows actually have.
std::string interval_note(const json& results) {
  std::set<std::pair<int64_t, double>> levels;
  for (const json& r : results) {
    const json& s = r["tokens_per_second"];
    if (s.contains("median_ci")) levels.insert({s["count"].get<int64_t>(), s["median_ci"]["level"].get<double>()});
  }
  std::string note;
  for (const auto& [count, level] : levels) {
    if (!note.empty()) note += "; ";
    note += fmt::format("{}: {:.1f}%", counted(count, "run"), 100 * level);
  }
  return note.empty() ? "" : " (coverage by run count: " + note + ")";
}

// A comparison is only fair on the same model and thread count: say when the file says otherwise.
std::string baseline_warnings(const json& doc, const json& b) {
  std::string out;
  const double ours = doc["model_file"]["tensor_bytes"].get<double>();
  if (b["model_size_bytes"].is_number() && b["model_size_bytes"].get<double>() != ours) {
    out += fmt::format("  - **warning**: {} measured a different model ({} of tensors, ours {})\n",
                       b["name"].get<std::string>(), bytes_text(b["model_size_bytes"].get<double>()),
                       bytes_text(ours));
  }
  if (b["threads"].is_number() && doc["threads"].is_number() &&
      b["threads"].get<int>() != doc["threads"].get<int>()) {
    out += fmt::format("  - **warning**: {} ran on {}, realizar on {}\n", b["name"].get<std::string>(),
                       counted(b["threads"].get<int>(), "thread"), doc["threads"].get<int>());
  }
  return out;
}

std::string model_markdown(const json& doc) {
  const json& env = doc["environment"];
  std::string out = fmt::format("## apr bench: {} on {}\n\n", doc["model_file"]["file_name"].get<std::string>(),
                                doc["backend"].get<std::string>());
  out += build_line(env) + host_line(env) + model_line(doc["model_file"]);
  const json& bw = doc["bandwidth"];
  const std::string detail = doc.value("backend_detail", std::string());
  out += fmt::format("- backend {}{}{}; weights read per token {}, KV cache {} per token; "
                     "memory bandwidth {}/s ({})\n",
                     doc["backend"].get<std::string>(), detail.empty() ? "" : " (" + detail + ")",
                     doc["threads"].is_number() ? ", " + counted(doc["threads"].get<int>(), "thread") : "",
                     bytes_text(doc["weight_bytes_per_token"].get<double>()),
                     bytes_text(doc["kv_bytes_per_token"].get<double>()),
                     bytes_text(bw["bytes_per_second"].get<double>()), bw["method"].get<std::string>());
  const json& method = doc["method"];
  out += fmt::format("- method: {} discarded, then {} per test{}; {}\n",
                     counted(method["warmup"].get<int>(), "warm-up run"),
                     counted(method["repetitions"].get<int>(), "measured run"),
                     method["cv_target"].get<double>() > 0
                         ? fmt::format(" and more until the mean's CV is below {} (at most {})",
                                       method["cv_target"].get<double>(),
                                       method["max_repetitions"].get<int>())
                         : "",
                     env["date"].get<std::string>());
  if (method.contains("sampling")) out += "- tokens picked: " + method["sampling"].get<std::string>() + "\n";
  const json& baselines = doc["baselines"];
  for (const json& b : baselines) {
    out += fmt::format("- {}: {} ({}, build {}, {}, {})\n", b["name"].get<std::string>(),
                       b["source"].get<std::string>(), b["format"].get<std::string>(),
                       text_or(b["build_commit"], "?"), text_or(b["cpu_info"], text_or(b["backends"], "?")),
                       b["threads"].is_number() ? counted(b["threads"].get<int>(), "thread") : "? threads");
    out += baseline_warnings(doc, b);
  }
  bool parallel = false;
  for (const json& r : doc["results"]) parallel = parallel || r.value("parallel", 1) > 1;
  out += "\n| test | tok/s median [CI] | mean ± sd | CV | runs | latency p50 / p95 / p99 (ms) | bandwidth use |";
  std::string rule = "\n|---|---|---|---|---|---|---|";
  if (parallel) {
    out += " per sequence tok/s |";
    rule += "---|";
  }
  for (const json& b : baselines) {
    out += fmt::format(" {} tok/s | ratio |", b["name"].get<std::string>());
    rule += "---|---|";
  }
  out += rule + "\n";
  for (const json& r : doc["results"]) {
    const json& s = r["tokens_per_second"];
    out += fmt::format("| {} | {} | {} | {} | {} | {} | {} |", r["test"].get<std::string>(),
                       median_cell(s), mean_cell(s), percent(s["cv"].get<double>()), runs_cell(s),
                       latency_cell(r["n_gen"].get<int64_t>() > 0 ? r["token_latency_ms"] : r["ttft_ms"]),
                       r["bandwidth_fraction"].is_number() ? percent(r["bandwidth_fraction"].get<double>()) : "");
    if (parallel) {
      out += r.value("parallel", 1) > 1
                 ? fmt::format(" {} |", format_number(r["per_sequence_tokens_per_second"].get<double>()))
                 : " |";
    }
    for (const json& b : baselines) {
      const json* theirs = find_result(b["results"], r["test"].get<std::string>());
      if (theirs == nullptr) {
        out += " – | – |";
        continue;
      }
      const json& ts = (*theirs)["tokens_per_second"];
      out += fmt::format(" {} | {} |", mean_cell(ts), ratio_text(s["mean"].get<double>(), ts["mean"].get<double>()));
    }
    out += "\n";
  }
  out += fmt::format(
      "\nCI: distribution-free interval of the median from order statistics, at least 95% "
      "coverage from 6 runs, the range below{}. Outliers: modified z-score above 3.5 (median "
      "absolute deviation), kept in every figure. Latency: pp, prompt to first token per run; "
      "tg and pp+tg, per decode step. Bandwidth use: decode steps/s × (weights + KV cache read per step) / "
      "memory bandwidth.{}\n",
      interval_note(doc["results"]), baselines.empty() ? "" : " Ratio: our mean / the baseline's mean.");
  return out;
}

// ---- serve ---------------------------------------------------------------------------------------

std::string workload_line(const json& w) {
  const json& p = w["prompt_tokens"];
  const json& o = w["output_tokens"];
  const double rate = w["rate"].is_number() ? w["rate"].get<double>() : 0.0;
  return fmt::format(
      "- workload: {} requests, prompts of {}-{} tokens, outputs of {}-{} tokens, {}, {}, seed {}, "
      "{} endpoint{}\n",
      w["requests"].get<int>(), p["min"].get<int64_t>(), p["max"].get<int64_t>(),
      o["min"].get<int64_t>(), o["max"].get<int64_t>(),
      rate > 0 ? fmt::format("Poisson arrivals at {} requests/s", rate) : "all arriving at once",
      w["concurrency"].get<int>() > 0 ? fmt::format("at most {} in flight", w["concurrency"].get<int>())
                                      : "no concurrency limit",
      w["seed"].get<uint64_t>(), w["endpoint"].get<std::string>(),
      w["ignore_eos"].get<bool>() ? ", ignore_eos" : "");
}

struct ServeRow {
  const char* label;
  const char* key;
  bool throughput;  // a summary over runs; else latency percentiles
};

constexpr ServeRow kServeRows[] = {
    {"output tok/s", "output_throughput", true},
    {"aggregate decode tok/s", "aggregate_decode_throughput", true},
    {"requests/s", "request_throughput", true},
    {"total tok/s (prompt + output)", "total_token_throughput", true},
    {"TTFT p50 / p95 / p99 (ms)", "ttft_ms", false},
    {"ITL p50 / p95 / p99 (ms)", "itl_ms", false},
    {"TPOT p50 / p95 / p99 (ms)", "tpot_ms", false},
    {"E2E latency p50 / p95 / p99 (ms)", "e2e_ms", false},
};

std::string throughput_cell(const json& s) {
  return s["count"].get<int64_t>() > 1 ? mean_cell(s) : format_number(s["mean"].get<double>());
}

// The figure ratios compare: the mean over runs, or the latency's median.
double serve_figure(const json& server, const ServeRow& row) {
  const json& v = server[row.key];
  if (row.throughput) return v["mean"].get<double>();
  return v.is_object() ? v["p50"].get<double>() : 0.0;
}

std::string serve_markdown(const json& doc) {
  const json& env = doc["environment"];
  const json& servers = doc["servers"];
  std::string out = "## apr bench serve\n\n" + build_line(env) + host_line(env) + workload_line(doc["workload"]);
  out += fmt::format("- method: {} per server, {} of the workload per server, servers taken in turn; {}\n",
                     counted(doc["method"]["warmup_requests"].get<int>(), "warm-up request"),
                     counted(doc["method"]["repetitions"].get<int>(), "run"), env["date"].get<std::string>());
  for (const json& s : servers) {
    out += fmt::format("- {}: {} ({}), model `{}`\n", s["name"].get<std::string>(),
                       text_or(s["url"], "in-process"), s["role"].get<std::string>(),
                       s["model"].get<std::string>());
  }
  std::vector<const json*> baselines;
  const json* subject = &servers.front();
  for (const json& s : servers) {
    if (s["role"].get<std::string>() == "baseline") baselines.push_back(&s);
    else subject = &s;
  }
  out += "\n| metric |";
  std::string rule = "\n|---|";
  for (const json& s : servers) {
    out += fmt::format(" {} |", s["name"].get<std::string>());
    rule += "---|";
  }
  for (const json* b : baselines) {
    out += fmt::format(" ratio to {} |", (*b)["name"].get<std::string>());
    rule += "---|";
  }
  out += rule + "\n| requests completed / failed |";
  for (const json& s : servers) out += fmt::format(" {} / {} |", s["completed"].get<int64_t>(), s["failed"].get<int64_t>());
  for (size_t i = 0; i < baselines.size(); ++i) out += " |";
  out += "\n";
  for (const ServeRow& row : kServeRows) {
    out += fmt::format("| {} |", row.label);
    for (const json& s : servers) {
      out += fmt::format(" {} |", row.throughput ? throughput_cell(s[row.key]) : latency_cell(s[row.key]));
    }
    for (const json* b : baselines) {
      out += fmt::format(" {} |", ratio_text(serve_figure(*subject, row), serve_figure(*b, row)));
    }
    out += "\n";
  }
  out += "\nThroughputs: mean ± sd over runs (one run: the value). Latencies: percentiles over "
         "every request of every run; ITL between streamed chunks. Aggregate decode tok/s: tokens "
         "after each request's first, per second of time in which any request was decoding (for "
         "requests decoding together, their rates summed).";
  if (!baselines.empty()) out += " Ratio: " + (*subject)["name"].get<std::string>() + " / the baseline (throughputs: means; latencies: p50s; below 1 is faster for latencies).";
  for (const json& s : servers) {
    for (const json& e : s["errors"]) out += fmt::format("\n\n{} error: {}", s["name"].get<std::string>(), e.get<std::string>());
  }
  return out + "\n";
}

// ---- CSV -----------------------------------------------------------------------------------------

std::string csv_field(const json& v) {
  if (v.is_null()) return "";
  if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
  if (v.is_number()) return fmt::format("{}", v.get<double>());
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  const std::string s = v.is_string() ? v.get<std::string>() : v.dump();
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string quoted = "\"";
  for (char c : s) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
  return quoted + "\"";
}

std::string csv_line(const std::vector<json>& fields) {
  std::string line;
  for (size_t i = 0; i < fields.size(); ++i) {
    if (i > 0) line += ',';
    line += csv_field(fields[i]);
  }
  return line + "\n";
}

json member(const json& object, const char* key) {
  return object.is_object() && object.contains(key) ? object[key] : json(nullptr);
}

std::string model_csv(const json& doc) {
  std::string out = csv_line({"engine", "test", "n_prompt", "n_gen", "n_depth", "parallel", "runs",
                              "mean_tok_s", "stdev_tok_s", "median_tok_s", "ci_low_tok_s",
                              "ci_high_tok_s", "ci_level", "cv", "min_tok_s", "max_tok_s",
                              "outliers", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms",
                              "bandwidth_fraction", "per_sequence_tok_s"});
  auto add = [&](const std::string& engine, const json& r) {
    const json& s = r["tokens_per_second"];
    const json latency = member(r, member(r, "n_gen").get<int64_t>() > 0 ? "token_latency_ms" : "ttft_ms");
    const json ci = member(s, "median_ci");
    out += csv_line({engine, r["test"], r["n_prompt"], r["n_gen"], r["n_depth"],
                     r.value("parallel", 1), member(s, "count"), s["mean"], member(s, "stdev"),
                     member(s, "median"), member(ci, "low"), member(ci, "high"), member(ci, "level"),
                     member(s, "cv"), member(s, "min"), member(s, "max"),
                     s.contains("outliers") ? json(s["outliers"].size()) : json(nullptr),
                     member(latency, "p50"), member(latency, "p95"), member(latency, "p99"),
                     member(r, "bandwidth_fraction"), member(r, "per_sequence_tokens_per_second")});
  };
  for (const json& r : doc["results"]) add("realizar", r);
  for (const json& b : doc["baselines"]) {
    for (const json& r : b["results"]) add(b["name"].get<std::string>(), r);
  }
  return out;
}

std::string serve_csv(const json& doc) {
  std::vector<json> header = {"server", "url", "model", "role", "runs", "completed", "failed"};
  for (const char* key : {"output_throughput", "aggregate_decode_throughput", "request_throughput", "total_token_throughput"}) {
    header.push_back(std::string(key) + "_mean");
    header.push_back(std::string(key) + "_stdev");
  }
  for (const char* key : {"ttft", "itl", "tpot", "e2e"}) {
    for (const char* p : {"p50", "p95", "p99"}) header.push_back(fmt::format("{}_{}_ms", key, p));
  }
  std::string out = csv_line(header);
  for (const json& s : doc["servers"]) {
    std::vector<json> row = {s["name"], s["url"], s["model"], s["role"], s["runs"].size(), s["completed"], s["failed"]};
    for (const char* key : {"output_throughput", "aggregate_decode_throughput", "request_throughput", "total_token_throughput"}) {
      row.push_back(s[key]["mean"]);
      row.push_back(s[key]["stdev"]);
    }
    for (const char* key : {"ttft_ms", "itl_ms", "tpot_ms", "e2e_ms"}) {
      for (const char* p : {"p50", "p95", "p99"}) row.push_back(member(s[key], p));
    }
    out += csv_line(row);
  }
  return out;
}

}  // namespace

std::string format_number(double value) {
  if (!std::isfinite(value)) return "–";
  const double magnitude = std::fabs(value);
  if (magnitude >= 1000) return fmt::format("{:.0f}", value);
  if (magnitude == 0) return "0";
  const int decimals = 3 - static_cast<int>(std::floor(std::log10(magnitude)));
  return fmt::format("{:.{}f}", value, std::max(1, decimals));
}

std::string markdown_report(const json& doc) {
  return doc["kind"] == "model" ? model_markdown(doc) : serve_markdown(doc);
}

std::string csv_report(const json& doc) {
  return doc["kind"] == "model" ? model_csv(doc) : serve_csv(doc);
}

}  // namespace realizar::bench
