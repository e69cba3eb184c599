#include "bench/model_bench.h"

#include "bench/bandwidth.h"
#include "bench/environment.h"
#include "bench/report_json.h"
#include "engine/backend_factory.h"
#include "util/cpu_count.h"

namespace realizar::bench {

nlohmann::json run_model_benchmark(const ModelBenchConfig& c) {
  const std::vector<TestSpec> tests = plan_tests(c.options);
  std::unique_ptr<Model> model = Model::load(c.model);
  std::unique_ptr<Backend> backend = make_backend(c.device, *model, backend_options(tests, c.threads));
  DecodeFloor floor;
  floor.weight_bytes_per_token = weight_bytes_per_token(model->weights);
  floor.kv_bytes_per_token = backend->kv_bytes_per_token();
  floor.bandwidth = measure_bandwidth(*backend, c.threads);

  const std::vector<Measurement> measurements = run_benchmark(*backend, tests, c.options.policy, c.options.sampling);

  nlohmann::json results = nlohmann::json::array();
  for (const Measurement& m : measurements) results.push_back(model_result_json(m, floor));
  nlohmann::json model_file = describe_model(model->file, model->config);
  model_file["synth"] = c.synth;
  const RepetitionPolicy& p = c.options.policy;
  const bool cpu_threads = backend->name() != "cuda";
  const int threads = c.threads > 0 ? c.threads : usable_cpu_count();
  return {{"schema_version", kSchemaVersion},
          {"kind", "model"},
          {"environment", describe_environment()},
          {"model", c.model.string()},
          {"architecture", model->config.architecture_name},
          {"model_file", model_file},
          {"backend", std::string(backend->name())},
          {"backend_detail", backend->detail()},
          {"threads", cpu_threads ? nlohmann::json(threads) : nlohmann::json(nullptr)},
          {"weight_bytes_per_token", floor.weight_bytes_per_token},
          {"kv_bytes_per_token", floor.kv_bytes_per_token},
          {"bandwidth", {{"bytes_per_second", floor.bandwidth.bytes_per_second},
                         {"method", floor.bandwidth.method}}},
          {"copy_bandwidth_bytes_per_second", floor.bandwidth.bytes_per_second},
          {"method", {{"warmup", p.warmup},
                      {"repetitions", p.repetitions},
                      {"cv_target", p.cv_target},
                      {"max_repetitions", p.max_repetitions},
                      {"sampling", describe_sampling(c.options.sampling)}}},
          {"results", results},
          {"baselines", c.baselines}};
}

}  // namespace realizar::bench
