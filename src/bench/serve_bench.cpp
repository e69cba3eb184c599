#include "bench/serve_bench.h"

#include <memory>

#include "bench/environment.h"
#include "bench/prompt_text.h"
#include "bench/report_json.h"
#include "realizar/error.h"
#include "realizar/gguf.h"
#include "realizar/tokenizer_gguf.h"
#include "util/progress.h"

namespace realizar::bench {
namespace {

constexpr int64_t kWarmupPromptTokens = 16;
constexpr int64_t kWarmupOutputTokens = 4;
constexpr double kCheckTimeoutSeconds = 10;

std::unique_ptr<Tokenizer> load_tokenizer(const std::filesystem::path& path) {
  if (path.extension() == ".gguf") {
    const gguf::File file = gguf::File::open(path);
    return std::make_unique<Tokenizer>(tokenizer_spec_from_gguf(file));
  }
  return std::make_unique<Tokenizer>(load_hf_tokenizer(path, std::nullopt));
}

struct Server {
  ServeTarget target;
  std::string model;
  std::vector<std::vector<RequestRecord>> runs;
};

std::string pick_model(const ServeTarget& t, const std::string& wanted) {
  const std::vector<std::string> ids = list_models(t.url, kCheckTimeoutSeconds);
  if (wanted.empty()) return ids.front();
  for (const std::string& id : ids) {
    if (id == wanted) return id;
  }
  std::string listed;
  for (const std::string& id : ids) listed += (listed.empty() ? "" : ", ") + id;
  fail("{} ({}) does not serve model '{}' (it lists: {})", t.name, t.url, wanted, listed);
}

CompletionRequest make_request(const ServeOptions& o, const Tokenizer* tokenizer, const std::string& model,
                               std::string prompt, int64_t prompt_tokens, int64_t output_tokens) {
  CompletionRequest r;
  r.tokenizer = tokenizer;
  r.api = o.api;
  r.model = model;
  r.prompt = std::move(prompt);
  r.prompt_tokens = prompt_tokens;
  r.max_tokens = output_tokens;
  r.ignore_eos = o.ignore_eos;
  r.timeout_seconds = o.timeout_seconds;
  return r;
}

// The warm-up requests double as the check that the model answers.
void warm_up(const Server& s, const ServeOptions& o, const PromptMaker& prompts, const Tokenizer* tokenizer) {
  for (int i = 0; i < o.warmup_requests; ++i) {
    const CompletionRequest r = make_request(o, tokenizer, s.model, prompts.make(kWarmupPromptTokens, -1 - i),
                                             kWarmupPromptTokens, kWarmupOutputTokens);
    const RequestRecord rec = stream_completion(s.target.url, r, WorkloadClock::now());
    if (!rec.ok()) {
      fail("{} ({}) did not answer a {} request for model '{}': {}", s.target.name, s.target.url,
           api_name(o.api), s.model, rec.error);
    }
    if (rec.output_tokens < 1) {
      fail("{} ({}) answered a {} request with no tokens", s.target.name, s.target.url, api_name(o.api));
    }
  }
}

nlohmann::json workload_json(const ServeOptions& o) {
  const ServingWorkload& w = o.workload;
  return {{"requests", w.requests},
          {"prompt_tokens", {{"min", w.prompt_tokens.min}, {"max", w.prompt_tokens.max}}},
          {"output_tokens", {{"min", w.output_tokens.min}, {"max", w.output_tokens.max}}},
          {"rate", w.rate > 0 ? nlohmann::json(w.rate) : nlohmann::json(nullptr)},
          {"concurrency", w.concurrency},
          {"seed", w.seed},
          {"endpoint", api_name(o.api)},
          {"ignore_eos", o.ignore_eos},
          {"tokenizer", o.tokenizer ? nlohmann::json(o.tokenizer->string()) : nlohmann::json(nullptr)},
          {"timeout_seconds", o.timeout_seconds}};
}

}  // namespace

ServeTarget parse_serve_target(std::string_view text, std::string_view role) {
  const size_t eq = text.find('=');
  const size_t scheme = text.find("://");
  std::string name, url;
  if (eq != std::string_view::npos && (scheme == std::string_view::npos || eq < scheme)) {
    name = std::string(text.substr(0, eq));
    url = normalize_base_url(text.substr(eq + 1));
    if (name.empty()) fail("'{}': the name before '=' is empty", text);
  } else {
    url = normalize_base_url(text);
    name = url.substr(url.find("://") + 3);
  }
  return {name, url, std::string(role)};
}

nlohmann::json run_serve_benchmark(const std::vector<ServeTarget>& targets, const ServeOptions& o) {
  if (targets.empty()) fail("bench serve: no server to measure");
  if (o.repetitions < 1 || o.warmup_requests < 0) {
    fail("bench serve: want at least 1 repetition and no negative warm-up count");
  }
  std::unique_ptr<Tokenizer> tokenizer;
  if (o.tokenizer) tokenizer = load_tokenizer(*o.tokenizer);
  const PromptMaker prompts(tokenizer.get(), o.workload.seed);
  const std::vector<PlannedRequest> plan = plan_requests(o.workload);
  std::vector<std::string> texts;
  for (const PlannedRequest& r : plan) texts.push_back(prompts.make(r.prompt_tokens, r.index));

  std::vector<Server> servers;
  for (const ServeTarget& t : targets) servers.push_back({t, pick_model(t, o.model), {}});
  for (const Server& s : servers) warm_up(s, o, prompts, tokenizer.get());

  for (int rep = 0; rep < o.repetitions; ++rep) {
    for (Server& s : servers) {
      Progress progress(fmt::format("bench serve {} run {}", s.target.name, rep + 1),
                        static_cast<uint64_t>(plan.size()), Progress::Unit::Items);
      std::mutex progress_mutex;
      auto execute = [&](const PlannedRequest& p, WorkloadClock::time_point start) {
        const CompletionRequest r = make_request(o, tokenizer.get(), s.model, texts[static_cast<size_t>(p.index)],
                                                 p.prompt_tokens, p.output_tokens);
        RequestRecord rec = stream_completion(s.target.url, r, start);
        std::lock_guard<std::mutex> lock(progress_mutex);
        progress.advance(1);
        return rec;
      };
      s.runs.push_back(run_workload(plan, o.workload.concurrency, execute));
    }
  }
  nlohmann::json server_rows = nlohmann::json::array();
  for (const Server& s : servers) {
    server_rows.push_back(serving_server_json(s.target.name, s.target.url, s.model, s.target.role, s.runs));
  }
  return serve_document(o, std::move(server_rows));
}

nlohmann::json serve_document(const ServeOptions& o, nlohmann::json servers) {
  return {{"schema_version", kSchemaVersion},
          {"kind", "serve"},
          {"environment", describe_environment()},
          {"workload", workload_json(o)},
          {"method", {{"warmup_requests", o.warmup_requests}, {"repetitions", o.repetitions}}},
          {"servers", std::move(servers)}};
}

}  // namespace realizar::bench
