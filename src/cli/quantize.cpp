// apr quantize IN.gguf OUT.gguf TYPE
#include <fmt/format.h>

#include <memory>

#include "cli/command.h"
#include "cli/options.h"
#include "realizar/convert.h"
#include "util/thread_pool.h"

namespace realizar::cli {
namespace {

struct QuantizeArgs {
  std::string in, out, type;
  int threads = 0;
};

CommandRunner setup(CLI::App& app) {
  auto args = std::make_shared<QuantizeArgs>();
  app.add_option("input", args->in, "GGUF model to read")->required();
  app.add_option("output", args->out, "GGUF file to write")->required();
  app.add_option("type", args->type, "f32, f16, bf16, q8_0, q4_0, q4_k_m, q5_k_m, q6_k")
      ->required();
  add_threads_option(app, args->threads);
  return [args] {
    const QuantScheme scheme = quant_scheme_from_name(args->type);
    ThreadPool pool(args->threads);
    quantize_gguf(args->in, args->out, scheme, pool);
    fmt::print("wrote {} ({})\n", args->out, quant_scheme_name(scheme));
    return 0;
  };
}

const bool registered = register_command(
    {"quantize", "re-encode a GGUF model's tensors with llama.cpp's type mix for TYPE", setup});

}  // namespace
}  // namespace realizar::cli
