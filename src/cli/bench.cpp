// apr bench MODEL | --synth PRESET   prefill/decode throughput (llama-bench's tests), with spread,
//                                    environment, bandwidth use and imported llama-bench rows
// apr bench serve [NAME=]URL         the serving workload against OpenAI-compatible servers
// apr bench compare BEFORE AFTER     differences between two results; exit 1 on a regression
// Every run prints Markdown; --json, --csv and --svg write the other forms.
#include <fstream>
#include <iostream>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "bench/compare.h"
#include "bench/engine_bench.h"
#include "bench/llama_bench_import.h"
#include "bench/model_bench.h"
#include "bench/report_json.h"
#include "bench/report_text.h"
#include "bench/serve_bench.h"
#include "bench/svg_chart.h"
#include "bench/synth_cache.h"
#include "cli/command.h"
#include "cli/options.h"
#include "realizar/error.h"
#include "realizar/hub.h"

namespace realizar::cli {
namespace {

struct OutputFiles {
  std::string json, csv, svg;
};

struct ModelArgs {
  std::string model;
  std::string synth;
  std::string synth_type = "q4_k_m";
  std::string tokenizer;
  DeviceArgs device;
  bench::BenchOptions options;
  SamplingArgs sampling;
  std::vector<std::string> prompt_generate;
  std::vector<std::string> imports;
};

// The serving workload's flags, shared by `bench serve` and `bench engine`.
struct WorkloadArgs {
  bench::ServeOptions options;
  std::string prompt_len = "128-1024";
  std::string output_len = "64-256";

  void apply() {
    options.workload.prompt_tokens = bench::parse_token_range(prompt_len, "--prompt-len");
    options.workload.output_tokens = bench::parse_token_range(output_len, "--output-len");
  }
};

struct ServeArgs {
  std::string subject;
  std::vector<std::string> baselines;
  WorkloadArgs workload;
  std::string endpoint = "completions";
  std::string tokenizer;
};

struct EngineArgs {
  std::string model;
  DeviceArgs device;
  int64_t context = 0;
  int parallel = 32;
  int64_t max_batch_tokens = 512;
  bool no_prefix_cache = false;
  SamplingArgs sampling;
  WorkloadArgs workload;
};

struct CompareArgs {
  std::string before, after;
  double threshold = 0.05;
};

void write_text_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  out.close();
  if (!out) fail("cannot write {}", path);
}

void emit(const nlohmann::json& doc, const OutputFiles& files) {
  bench::check_document(doc, "the new result");
  std::cout << bench::markdown_report(doc) << std::flush;
  if (!files.json.empty()) write_text_file(files.json, doc.dump(2) + "\n");
  if (!files.csv.empty()) write_text_file(files.csv, bench::csv_report(doc));
  if (!files.svg.empty()) write_text_file(files.svg, bench::svg_chart(doc));
}

nlohmann::json read_document(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot read {}", path);
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(in);
  } catch (const nlohmann::json::parse_error& e) {
    fail("{}: not valid JSON ({})", path, e.what());
  }
  bench::check_document(doc, path);
  return doc;
}

// "P,N" of --pg.
std::pair<int64_t, int64_t> parse_prompt_generate(const std::string& text) {
  const size_t comma = text.find(',');
  try {
    if (comma != std::string::npos) {
      size_t used_p = 0, used_n = 0;
      const std::string p = text.substr(0, comma), n = text.substr(comma + 1);
      const long long prompt = std::stoll(p, &used_p), gen = std::stoll(n, &used_n);
      if (used_p == p.size() && used_n == n.size() && prompt > 0 && gen > 0) return {prompt, gen};
    }
  } catch (const std::exception&) {
  }
  fail("--pg: want PROMPT,GENERATED token counts such as 512,128, got '{}'", text);
}

// "[NAME=]FILE" of --import-llama-bench.
nlohmann::json import_baseline(const std::string& text) {
  const size_t eq = text.find('=');
  if (eq != std::string::npos && eq > 0 && text.substr(0, eq).find('/') == std::string::npos) {
    return bench::import_llama_bench(text.substr(eq + 1), text.substr(0, eq));
  }
  return bench::import_llama_bench(text, "llama.cpp");
}

int run_model(ModelArgs args, const OutputFiles& files) {
  bench::ModelBenchConfig config;
  if (!args.synth.empty() && !args.model.empty()) fail("bench: give a MODEL file or --synth, not both");
  if (!args.synth.empty()) {
    bench::SynthRequest request{args.synth, args.synth_type, std::nullopt};
    if (!args.tokenizer.empty()) request.tokenizer = args.tokenizer;
    const bench::SynthModel synth = bench::cached_synth_model(request, args.device.threads);
    config.model = synth.path;
    config.synth = synth.description;
  } else if (args.model.empty()) {
    fail("bench: give a MODEL file, --synth PRESET, or a subcommand (serve, compare)");
  } else {
    config.model = hub::resolve_model(args.model);
  }
  for (const std::string& pg : args.prompt_generate) {
    args.options.prompt_generate.push_back(parse_prompt_generate(pg));
  }
  config.device = parse_device(args.device.device);
  config.threads = args.device.threads;
  config.options = args.options;
  config.options.sampling = sampling_params(args.sampling);
  for (const std::string& i : args.imports) config.baselines.push_back(import_baseline(i));
  emit(bench::run_model_benchmark(config), files);
  return 0;
}

int run_serve(ServeArgs args, const OutputFiles& files) {
  std::vector<bench::ServeTarget> targets = {bench::parse_serve_target(args.subject, "subject")};
  for (const std::string& b : args.baselines) targets.push_back(bench::parse_serve_target(b, "baseline"));
  for (size_t i = 0; i < targets.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (targets[i].name == targets[j].name) {
        fail("bench serve: two servers are named '{}' (write NAME=URL)", targets[i].name);
      }
    }
  }
  args.workload.apply();
  bench::ServeOptions& options = args.workload.options;
  options.api = bench::parse_api(args.endpoint);
  if (!args.tokenizer.empty()) options.tokenizer = args.tokenizer;
  const nlohmann::json doc = bench::run_serve_benchmark(targets, options);
  emit(doc, files);
  int64_t failed = 0, total = 0;
  for (const nlohmann::json& s : doc["servers"]) {
    failed += s["failed"].get<int64_t>();
    total += s["failed"].get<int64_t>() + s["completed"].get<int64_t>();
  }
  // A benchmark whose requests failed measured something else: say so in the exit code.
  if (failed > 0) fail("bench serve: {} of {} measured requests failed (errors above)", failed, total);
  return 0;
}

int run_compare(const CompareArgs& args) {
  const nlohmann::json before = read_document(args.before);
  const nlohmann::json after = read_document(args.after);
  bench::Comparison c;
  try {
    c = bench::compare_documents(before, after, args.threshold);
  } catch (const nlohmann::json::exception& e) {  // a field of the wrong type past the check
    fail("bench compare: {} and {} do not hold comparable results ({})", args.before, args.after, e.what());
  }
  std::cout << bench::comparison_markdown(c, args.before, args.after) << std::flush;
  return c.regressed() ? 1 : 0;
}

void add_output_options(CLI::App& app, OutputFiles& files) {
  app.add_option("--json", files.json, "also write the result as JSON (docs/bench.schema.json)");
  app.add_option("--csv", files.csv, "also write the table as CSV");
  app.add_option("--svg", files.svg, "also write a bar chart as a standalone SVG file");
}

void add_method_options(CLI::App& app, bench::RepetitionPolicy& policy, const char* runs_help,
                        const char* warmup_help) {
  app.add_option("-r,--repetitions", policy.repetitions, runs_help)->check(kPositive)->capture_default_str();
  app.add_option("--warmup", policy.warmup, warmup_help)->check(kNonNegative)->capture_default_str();
}

// --requests, --prompt-len, --output-len, --rate, --concurrency, --seed, --ignore-eos,
// -r/--repetitions, --warmup, --timeout.
void add_workload_options(CLI::App& app, WorkloadArgs& args) {
  bench::ServeOptions& o = args.options;
  app.add_option("--requests", o.workload.requests, "requests per run")->check(kPositive)->capture_default_str();
  app.add_option("--prompt-len", args.prompt_len, "prompt tokens, MIN-MAX (uniform) or N")->capture_default_str();
  app.add_option("--output-len", args.output_len, "tokens to generate, MIN-MAX (uniform) or N")->capture_default_str();
  app.add_option("--rate", o.workload.rate, "requests per second, Poisson arrivals (0: all at once)")
      ->check(kNonNegative)->capture_default_str();
  app.add_option("--concurrency", o.workload.concurrency, "most requests in flight (0: no limit)")
      ->check(kNonNegative)->capture_default_str();
  app.add_option("--seed", o.workload.seed, "seed of the lengths, arrivals and prompts")->capture_default_str();
  app.add_flag("--ignore-eos,!--no-ignore-eos", o.ignore_eos,
               "ask for exactly the planned output length (ignore_eos, llama.cpp and vLLM; default on)");
  app.add_option("-r,--repetitions", o.repetitions, "runs of the workload")
      ->check(kPositive)->capture_default_str();
  app.add_option("--warmup", o.warmup_requests, "short warm-up requests, not measured")
      ->check(kNonNegative)->capture_default_str();
  app.add_option("--timeout", o.timeout_seconds, "seconds one request may take")->check(kPositive)->capture_default_str();
}

CommandRunner setup_serve(CLI::App& app, std::shared_ptr<OutputFiles> files) {
  auto args = std::make_shared<ServeArgs>();
  bench::ServeOptions& o = args->workload.options;
  app.add_option("url", args->subject, "[NAME=]URL of the OpenAI-compatible server to measure")->required();
  app.add_option("--baseline", args->baselines,
                 "[NAME=]URL of another server to run the same workload against (repeatable)");
  app.add_option("--model", o.model, "model to request (default: the first one /v1/models lists)");
  app.add_option("--endpoint", args->endpoint, "completions or chat")
      ->check(CLI::IsMember({"completions", "chat"}))->capture_default_str();
  add_workload_options(app, args->workload);
  app.add_option("--tokenizer", args->tokenizer,
                 "tokenizer.json or GGUF of the served model: prompts of exactly the planned length "
                 "(default: about one token per word, counted by the server)");
  add_output_options(app, *files);
  return [args, files] { return run_serve(*args, *files); };
}

int run_engine(EngineArgs args, const OutputFiles& files) {
  args.workload.apply();
  bench::EngineBenchConfig config;
  config.model = hub::resolve_model(args.model);
  config.engine = engine_options(args.device, args.context);
  config.engine.max_sequences = args.parallel;
  config.engine.max_batch_tokens = args.max_batch_tokens;
  config.engine.prefix_caching = !args.no_prefix_cache;
  config.options = args.workload.options;
  args.sampling.seed = args.workload.options.workload.seed;
  config.sampling = sampling_params(args.sampling);
  const nlohmann::json doc = bench::run_engine_benchmark(config);
  emit(doc, files);
  const int64_t failed = doc["servers"][0]["failed"].get<int64_t>();
  if (failed > 0) fail("bench engine: {} measured requests failed (errors above)", failed);
  return 0;
}

CommandRunner setup_engine(CLI::App& app, std::shared_ptr<OutputFiles> files) {
  auto args = std::make_shared<EngineArgs>();
  app.add_option("model", args->model, kModelHelp)->required();
  add_device_options(app, args->device);
  add_context_option(app, args->context);
  app.add_option("--parallel", args->parallel, "sequences the engine runs at once")->check(kPositive)->capture_default_str();
  app.add_option("--max-batch-tokens", args->max_batch_tokens, "tokens per step: decode rows and prompt chunks")
      ->check(kPositive)->capture_default_str();
  app.add_flag("--no-prefix-cache", args->no_prefix_cache, "do not reuse the KV cache of shared prompt prefixes");
  args->sampling.params = bench::BenchOptions::greedy();
  add_sampling_options(app, args->sampling, /*seed=*/false);  // --seed is the workload's
  add_workload_options(app, args->workload);
  add_output_options(app, *files);
  return [args, files] { return run_engine(*args, *files); };
}

CommandRunner setup_compare(CLI::App& app) {
  auto args = std::make_shared<CompareArgs>();
  app.add_option("before", args->before, "JSON result of apr bench (the reference)")->required();
  app.add_option("after", args->after, "JSON result of apr bench (the candidate)")->required();
  app.add_option("--threshold", args->threshold,
                 "a row regresses when worse by more than this fraction, intervals apart")
      ->check(kPositive)->capture_default_str();
  return [args] { return run_compare(*args); };
}

CommandRunner setup(CLI::App& app) {
  auto args = std::make_shared<ModelArgs>();
  auto files = std::make_shared<OutputFiles>();
  bench::BenchOptions& o = args->options;
  app.require_subcommand(0, 1);
  app.add_option("model", args->model, kModelHelp);
  app.add_option("--synth", args->synth,
                 "benchmark the random-weight model of this apr synth preset instead (built once, "
                 "cached under $REALIZAR_HOME/synth)");
  app.add_option("--type", args->synth_type, "quantization of the --synth model")->capture_default_str();
  app.add_option("--tokenizer", args->tokenizer,
                 "tokenizer.json of the --synth model (default: the preset's, from the source tree)");
  add_device_options(app, args->device);
  app.add_option("-p,--prompt-tokens", o.prompt_tokens, "prefill test lengths, comma-separated (0: none)")
      ->delimiter(',')->check(kNonNegative)->capture_default_str();
  app.add_option("-n,--generate-tokens", o.generate_tokens, "decode test lengths, comma-separated (0: none)")
      ->delimiter(',')->check(kNonNegative)->capture_default_str();
  app.add_option("--pg", args->prompt_generate,
                 "PROMPT,GENERATED: a prompt then decode steps, timed together (llama-bench's -pg; repeatable)");
  app.add_option("-d,--depth", o.depths, "tokens already cached before each test, comma-separated")
      ->delimiter(',')->check(kNonNegative)->capture_default_str();
  app.add_option("--parallel", o.parallel,
                 "sequences decoding together, comma-separated; each gets its own prompt of the first -p "
                 "length first (or the depth)")
      ->delimiter(',')->check(kPositive)->capture_default_str();
  add_method_options(app, o.policy, "measured runs per test (with --cv, the least)",
                     "warm-up runs per test, discarded");
  args->sampling.params = bench::BenchOptions::greedy();  // greedy unless sampling flags are given
  add_sampling_options(app, args->sampling);
  app.add_option("--cv", o.policy.cv_target,
                 "measure until the coefficient of variation of the mean is below this (0: off)")
      ->check(kNonNegative)->capture_default_str();
  app.add_option("--max-repetitions", o.policy.max_repetitions, "most measured runs per test with --cv")
      ->check(kPositive)->capture_default_str();
  app.add_option("--import-llama-bench", args->imports,
                 "[NAME=]FILE: llama-bench -o json, jsonl or md output to show beside ours "
                 "(repeatable; NAME default llama.cpp)");
  add_output_options(app, *files);

  CLI::App* serve = app.add_subcommand(
      "serve", "run the serving workload against OpenAI-compatible servers (TTFT, ITL, throughput)");
  CLI::App* engine = app.add_subcommand(
      "engine", "run the serving workload on the engine in-process, as apr serve would (TTFT, ITL, throughput)");
  CLI::App* compare = app.add_subcommand(
      "compare", "differences between two apr bench JSON results; exit code 1 on a regression");
  CommandRunner run_serve_command = setup_serve(*serve, std::make_shared<OutputFiles>());
  CommandRunner run_engine_command = setup_engine(*engine, std::make_shared<OutputFiles>());
  CommandRunner run_compare_command = setup_compare(*compare);
  return [=] {
    if (serve->parsed()) return run_serve_command();
    if (engine->parsed()) return run_engine_command();
    if (compare->parsed()) return run_compare_command();
    return run_model(*args, *files);
  };
}

const bool registered = register_command(
    {"bench",
     "measure prefill (pp) and decode (tg) throughput of a model, or a server (bench serve)",
     setup});

}  // namespace
}  // namespace realizar::cli
