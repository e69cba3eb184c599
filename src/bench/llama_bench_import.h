// Reads llama-bench's output (`-o json`, `-o jsonl` or `-o md`) so that a run made with it on
// the same machine sits in the same table as ours (`apr bench --import-llama-bench FILE`).
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace realizar::bench {

// A baseline in the shape of docs/bench.schema.json's "baseline": {name, source, format,
// build_commit, cpu_info, gpu_info, backends, model, model_file, model_size_bytes, threads, date,
// results: [{test, n_prompt, n_gen, n_depth, threads, tokens_per_second}]}. Test names are ours
// (TestSpec::name: "pp512", "tg128", "pp512+tg128", "tg128 @ d4096"), which are llama-bench's.
// From JSON and JSONL, tokens_per_second is the full summary of samples_ts (stats.h); from
// Markdown, which prints only "mean ± stdev", it holds mean and stdev. Fields the file lacks are
// null. The format is recognised from the content. Throws realizar::Error naming the file (and
// the record or line) for unreadable files, other formats, and records without a test or rate.
nlohmann::json import_llama_bench(const std::filesystem::path& path, std::string_view name);

// The same from text already read; `source` names it in messages.
nlohmann::json parse_llama_bench(std::string_view text, std::string_view source,
                                 std::string_view name);

}  // namespace realizar::bench
