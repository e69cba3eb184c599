// Where and with what a benchmark number was measured, for every result `apr bench` writes
// (Hoefler & Belli's rule 9: report the environment): the build, the host's CPU and memory, the
// GPUs with their driver and CUDA versions, the date, and the model file.
#pragma once

#include <nlohmann/json.hpp>

#include "realizar/gguf.h"
#include "realizar/model.h"

namespace realizar::bench {

// {"realizar": {version, git_commit, git_dirty, build_type, compiler, flags, options,
//  cuda_architectures}, "host": {cpu_model, logical_cpus, memory_bytes, os}, "gpu": see
// gpu_environment.h, "date": ISO 8601 UTC}.
nlohmann::json describe_environment();

// {path, file_name, file_size_bytes, architecture, name (general.name, or null), parameters,
//  tensor_bytes, quant_mix: [{type, tensors, bytes}] (most bytes first), header_sha256 (SHA-256
//  of the bytes before the tensor data: metadata and tensor descriptions; reading it is quick
//  and it names the weights' layout, not their values)}.
nlohmann::json describe_model(const gguf::File& file, const ModelConfig& config);

// The CPU model as /proc/cpuinfo names it ("model name"), "unknown" when absent.
std::string cpu_model_name();

}  // namespace realizar::bench
