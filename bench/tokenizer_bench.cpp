// Encoding throughput (bytes/s) of the Qwen2 byte-level BPE and LLaMA-2 SentencePiece BPE
// tokenizers on mixed text, and on 1 MB single-line inputs that stress long words (BPE over one
// 1 MB "word" is O(n log n) with the priority-queue merge; see docs/tokenizer.md).
#include <benchmark/benchmark.h>
#include <realizar/tokenizer.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace {

using realizar::Tokenizer;

const std::filesystem::path kTokenizers = std::filesystem::path(REALIZAR_SOURCE_DIR) / "tests/data/tokenizers";

const Tokenizer& tokenizer(const std::string& name) {
  static const Tokenizer qwen2(realizar::load_hf_tokenizer(kTokenizers / "qwen2/tokenizer.json", std::nullopt));
  static const Tokenizer llama2(realizar::load_hf_tokenizer(kTokenizers / "llama2/tokenizer.json", std::nullopt));
  return name == "qwen2" ? qwen2 : llama2;
}

// ~1 MB of the committed test corpus (code, several scripts, emoji, whitespace) repeated.
std::string mixed_text() {
  std::ifstream in(std::filesystem::path(REALIZAR_SOURCE_DIR) / "tests/data/tokenizer/corpus.json");
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string text;
  while (text.size() < (1u << 20)) text += buffer.str();
  return text;
}

std::string single_line(const std::string& kind) {
  constexpr size_t kSize = 1u << 20;
  if (kind == "letters") return std::string(kSize, 'a');
  if (kind == "spaces") return std::string(kSize, ' ') + "x";
  std::string words;  // one line of words without newlines
  while (words.size() < kSize) words += "lorem ipsum dolor sit amet, consectetur adipiscing elit 12345 ";
  return words;
}

void encode(benchmark::State& state, const std::string& name, const std::string& text) {
  const Tokenizer& t = tokenizer(name);
  size_t tokens = 0;
  for (auto _ : state) {
    const auto ids = t.encode(text, false, false);
    tokens = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
  state.counters["tokens"] = static_cast<double>(tokens);
}

void BM_Construct(benchmark::State& state, const std::string& name) {
  const auto spec = realizar::load_hf_tokenizer(kTokenizers / name / "tokenizer.json", std::nullopt);
  for (auto _ : state) {
    Tokenizer t(spec);
    benchmark::DoNotOptimize(&t);
  }
}

}  // namespace

BENCHMARK_CAPTURE(BM_Construct, qwen2, std::string("qwen2"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Construct, llama2, std::string("llama2"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(encode, qwen2_mixed, std::string("qwen2"), mixed_text())->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(encode, llama2_mixed, std::string("llama2"), mixed_text())->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(encode, qwen2_1MB_one_word, std::string("qwen2"), single_line("letters"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(encode, llama2_1MB_one_word, std::string("llama2"), single_line("letters"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(encode, qwen2_1MB_spaces, std::string("qwen2"), single_line("spaces"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(encode, llama2_1MB_spaces, std::string("llama2"), single_line("spaces"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(encode, qwen2_1MB_line_of_words, std::string("qwen2"), single_line("words"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(encode, llama2_1MB_line_of_words, std::string("llama2"), single_line("words"))->Unit(benchmark::kMillisecond);
