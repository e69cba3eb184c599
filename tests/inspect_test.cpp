// apr inspect: fields of a known file, --json, and the malformed GGUF corpus.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "test_support.h"

namespace realizar {
namespace {

using testing::run_apr;
using testing::TempDir;

std::string synth_tiny(const TempDir& dir) {
  const std::string path = (dir / "tiny.gguf").string();
  const auto tok = testing::source_dir() / "tests/data/tokenizers/llama2/tokenizer.json";
  EXPECT_EQ(run_apr({"synth", "tiny", "-o", path, "--type", "q8_0", "--tokenizer", tok.string()})
                .exit_code, 0);
  return path;
}

TEST(Inspect, JsonDescribesTheTinySynthModel) {
  TempDir dir;
  const std::string path = synth_tiny(dir);
  const auto result = run_apr({"inspect", path, "--json", "--ctx", "100"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const auto r = nlohmann::json::parse(result.out);
  EXPECT_EQ(r["architecture"], "llama");
  EXPECT_EQ(r["file_type"], 7);
  EXPECT_EQ(r["hyperparameters"]["block_count"], 2);
  EXPECT_EQ(r["hyperparameters"]["head_count_kv"], 2);
  EXPECT_EQ(r["tokenizer"]["model"], "llama");
  EXPECT_EQ(r["tokenizer"]["bos"]["text"], "<s>");
  EXPECT_EQ(r["tokenizer"]["eos"]["text"], "</s>");
  const int64_t vocab = r["tokenizer"]["vocab_size"];
  EXPECT_EQ(r["hyperparameters"]["vocab_size"], vocab);
  // 2 embeddings-sized matrices + 2 layers of (q 64x64, k/v 32x64, o 64x64, 3 FFN 128x64, 2 norms)
  // + the output norm.
  const int64_t per_layer = 64 * 64 * 2 + 32 * 64 * 2 + 3 * 128 * 64 + 2 * 64;
  EXPECT_EQ(r["parameter_count"], 2 * vocab * 64 + 2 * per_layer + 64);
  ASSERT_EQ(r["tensors"].size(), 1u + 2 * 9 + 2);
  EXPECT_EQ(r["tensors"][0]["name"], "token_embd.weight");
  EXPECT_EQ(r["tensors"][0]["type"], "Q8_0");
  EXPECT_EQ(r["tensors"][0]["shape"], (std::vector<int64_t>{64, vocab}));
  EXPECT_EQ(r["tensors"][0]["bytes"], vocab * 2 * 34);  // Q8_0: 34 bytes per 32 elements
  EXPECT_EQ(r["context"], 100);
  EXPECT_EQ(r["kv_cache_bytes"], 2 * 2 * 100 * 32 * 2);  // K and V, 2 layers, kv_dim 32, fp16
  EXPECT_EQ(r["file_size"], std::filesystem::file_size(path));
}

TEST(Inspect, TextNamesTheEssentials) {
  TempDir dir;
  const auto result = run_apr({"inspect", synth_tiny(dir)});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  for (const char* fragment : {"architecture: llama", "bos \"<s>\" (1)", "chat template: no"  /* the LLaMA-2 config has none */,
                               "blk.1.ffn_down.weight", "KV cache (fp16, ctx 256)"}) {
    EXPECT_NE(result.out.find(fragment), std::string::npos) << fragment << "\n" << result.out;
  }
}

TEST(GgufCliMalformed, EveryCorpusFileFailsWithTheReaderMessage) {
  // The corpus is generated (the .gguf files are not committed), with its manifest.
  TempDir corpus_dir;
  const auto corpus = corpus_dir.path();
  const std::string make = "python3 " + (testing::source_dir() / "tools/make_malformed_gguf.py").string() +
                           " " + corpus.string() + " > /dev/null";
  ASSERT_EQ(std::system(make.c_str()), 0);
  std::ifstream manifest(corpus / "expected.txt");
  ASSERT_TRUE(manifest);
  std::string line;
  int checked = 0;
  while (std::getline(manifest, line)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t tab = line.find('\t');
    ASSERT_NE(tab, std::string::npos) << line;
    const std::string file = line.substr(0, tab), fragment = line.substr(tab + 1);
    const auto result = run_apr({"inspect", (corpus / file).string()});
    EXPECT_EQ(result.exit_code, 1) << file;
    EXPECT_NE(result.err.find("apr: error: "), std::string::npos) << file << ": " << result.err;
    EXPECT_NE(result.err.find(fragment), std::string::npos) << file << ": " << result.err;
    ++checked;
  }
  EXPECT_GT(checked, 10);
}

}  // namespace
}  // namespace realizar
