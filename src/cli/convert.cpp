// apr convert HF_DIR -o OUT.gguf --type f32|f16|bf16|q8_0|q4_0|q4_k_m|q5_k_m|q6_k
#include <fmt/format.h>

#include <memory>

#include "cli/command.h"
#include "cli/options.h"
#include "realizar/convert.h"
#include "util/thread_pool.h"

namespace realizar::cli {
namespace {

struct ConvertArgs {
  std::string hf_dir, out, type = "f16";
  int threads = 0;
};

CommandRunner setup(CLI::App& app) {
  auto args = std::make_shared<ConvertArgs>();
  app.add_option("hf_dir", args->hf_dir,
                 "Hugging Face checkpoint: config.json, *.safetensors, tokenizer.json")
      ->required();
  app.add_option("-o,--output", args->out, "GGUF file to write")->required();
  app.add_option("--type", args->type, "f32, f16, bf16, q8_0, q4_0, q4_k_m, q5_k_m, q6_k")->capture_default_str();
  add_threads_option(app, args->threads);
  return [args] {
    const QuantScheme scheme = quant_scheme_from_name(args->type);
    ThreadPool pool(args->threads);
    convert_hf_to_gguf(args->hf_dir, args->out, scheme, pool);
    fmt::print("wrote {} ({})\n", args->out, quant_scheme_name(scheme));
    return 0;
  };
}

const bool registered = register_command(
    {"convert", "convert a Hugging Face checkpoint (Qwen2, LLaMA, phi-2) to GGUF", setup});

}  // namespace
}  // namespace realizar::cli
