// Benchmark of one layer's attention at the 7B shape (28 query heads, 4 KV heads, head_dim 128)
// at long contexts (docs/perf-notes.md, "Causal flash attention for prompt chunks"): a prompt
// chunk after 0, 4,096 and 15,872 cached keys through the query tiles (FlashAttention-2 kernel,
// plan_attention's splits) against the same tokens as decode tokens (the kernel prompts used
// before; the decode split rule gives what it gave them: none at 512 tokens, 5 ranges at 16 and
// 2 at 64 tokens after 16k keys); chunks of 16 and 64 tokens after 16,384 keys
// both ways (where tiles start to pay); one decode token after 4,096 and 16,384 keys at several
// split counts. Runs only with REALIZAR_CUDA_BENCH=1 (it takes seconds and needs a quiet GPU).
//
// Method (as cuda_matvec_bench_test.cpp): kCopies caches, each its own shuffled blocks of a
// 16,896-token sequence, together larger than L2 (6 x 34.6 MB), one launch per copy in a CUDA
// graph; median replay time over the copies is the time per layer.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <numeric>
#include <random>
#include <string_view>
#include <vector>

#ifdef REALIZAR_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "backend/cuda/kernels.h"
#include "gpu/cuda_test_support.h"
#endif

namespace realizar {
namespace {

#ifndef REALIZAR_HAVE_CUDA
TEST(CudaAttentionBench, SkippedWithoutCuda) { GTEST_SKIP() << "built without the CUDA backend"; }
#else

using testing::DeviceVector;

constexpr int kHeads = 28, kKvHeads = 4, kHeadDim = 128, kBlock = 16;
constexpr int kQDim = kHeads * kHeadDim, kKvDim = kKvHeads * kHeadDim;
constexpr int kCopies = 6;
constexpr int kMaxTokens = 512;
constexpr int kSequence = 16384 + kMaxTokens;           // keys of the longest case
constexpr int kBlocksPerCopy = kSequence / kBlock;
constexpr int64_t kScratchRows = 2048;

struct Bench {
  cudaStream_t stream = nullptr;
  int multiprocessors = 0;
  cuda::AttentionParams p{kHeads, kKvHeads, kHeadDim, kBlock, 0.08838834764831845f};
  std::unique_ptr<DeviceVector<uint16_t>> keys, values, half;
  std::unique_ptr<DeviceVector<float>> q, out, partial_o, partial_ml, q8_scales;
  std::unique_ptr<DeviceVector<int8_t>> q8;
  std::unique_ptr<DeviceVector<int32_t>> tables, stride, positions;

  Bench() {
    EXPECT_EQ(cudaStreamCreate(&stream), cudaSuccess);
    multiprocessors = cuda::list_devices()[0].multiprocessors;
    // Random float16 in [-1, 1) from a tile of 1 Mi values repeated (generating 200 MB is slow).
    std::mt19937_64 rng(5);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    std::vector<uint16_t> tile(size_t{1} << 20);
    for (auto& h : tile) h = fp32_to_fp16(dist(rng));
    std::vector<uint16_t> cache(static_cast<size_t>(kCopies) * kBlocksPerCopy * kBlock * kKvDim);
    for (size_t i = 0; i < cache.size(); ++i) cache[i] = tile[(i * 7919) % tile.size()];
    keys = std::make_unique<DeviceVector<uint16_t>>(cache);
    std::rotate(cache.begin(), cache.begin() + 12345, cache.end());
    values = std::make_unique<DeviceVector<uint16_t>>(cache);
    // Copy c's table row c: its own blocks, shuffled.
    std::vector<int32_t> table(static_cast<size_t>(kCopies) * kBlocksPerCopy);
    for (int c = 0; c < kCopies; ++c) {
      auto row = table.begin() + static_cast<std::ptrdiff_t>(c) * kBlocksPerCopy;
      std::iota(row, row + kBlocksPerCopy, c * kBlocksPerCopy);
      std::shuffle(row, row + kBlocksPerCopy, rng);
    }
    tables = std::make_unique<DeviceVector<int32_t>>(table);
    stride = std::make_unique<DeviceVector<int32_t>>(std::vector<int32_t>{kBlocksPerCopy});
    q = std::make_unique<DeviceVector<float>>(testing::random_floats(size_t{kMaxTokens} * kQDim, rng, 2.0f));
    out = std::make_unique<DeviceVector<float>>(size_t{kMaxTokens} * kQDim);
    half = std::make_unique<DeviceVector<uint16_t>>(size_t{kMaxTokens} * kQDim);
    q8 = std::make_unique<DeviceVector<int8_t>>(size_t{kQDim});
    q8_scales = std::make_unique<DeviceVector<float>>(size_t{kQDim} / 16);
    partial_o = std::make_unique<DeviceVector<float>>(static_cast<size_t>(kScratchRows) * kQDim);
    partial_ml = std::make_unique<DeviceVector<float>>(static_cast<size_t>(kScratchRows) * kHeads * 2);
  }
  ~Bench() { cudaStreamDestroy(stream); }

  // `tokens` consecutive tokens at positions [first, first + tokens) of one sequence, as decode
  // tokens (tiled false) or query tiles; copy c's launch reads table row c.
  double seconds(int first, int tokens, bool tiled, int splits_override = 0) {
    std::vector<int32_t> pos(static_cast<size_t>(tokens)), decode;
    std::iota(pos.begin(), pos.end(), first);
    const int tile_tokens = cuda::flash_tile_tokens(kHeads / kKvHeads);
    std::vector<std::vector<int32_t>> tile_lists(kCopies);
    for (int t = 0; t < tokens; t += tiled ? tile_tokens : 1) {
      if (!tiled) decode.push_back(t);
      for (int c = 0; tiled && c < kCopies; ++c) {
        tile_lists[c].insert(tile_lists[c].end(), {t, std::min(tile_tokens, tokens - t), c, first + t});
      }
    }
    const int64_t tile_count = static_cast<int64_t>(tile_lists[0].size() / 4);
    positions = std::make_unique<DeviceVector<int32_t>>(pos);
    std::vector<std::unique_ptr<DeviceVector<int32_t>>> copy_rows, copy_tiles;
    for (int c = 0; c < kCopies; ++c) {
      copy_rows.push_back(std::make_unique<DeviceVector<int32_t>>(std::vector<int32_t>(static_cast<size_t>(tokens), c)));
      copy_tiles.push_back(std::make_unique<DeviceVector<int32_t>>(tiled ? tile_lists[c] : std::vector<int32_t>(4, 0)));
    }
    const cuda::AttentionWork work{static_cast<int64_t>(decode.size()), decode.empty() ? 0 : first + tokens, tile_count,
                                   tile_count == 0 ? 0 : first + tokens};
    cuda::AttentionPlan plan = cuda::plan_attention(p, work, multiprocessors, kScratchRows);
    if (splits_override > 0) (tiled ? plan.tile_splits : plan.decode_splits) = splits_override;
    last_plan = plan;
    const cuda::InputCopy copy = tokens > 8 ? cuda::InputCopy{{}, half->get()}
                                            : cuda::InputCopy{{q8->get(), q8_scales->get()}, nullptr};
    return testing::median_launch_seconds(kCopies, stream, [&](int c) {
      // As the backend: a step without tiles passes no decode list (its tokens in order).
      const cuda::AttentionStep step{positions->get(), copy_rows[static_cast<size_t>(c)]->get(), tables->get(),
                                     stride->get(),    nullptr, copy_tiles[static_cast<size_t>(c)]->get()};
      cuda::attention(p, q->get(), keys->get(), values->get(), step, plan,
                      {partial_o->get(), partial_ml->get(), kScratchRows}, out->get(), copy, stream);
    });
  }
  cuda::AttentionPlan last_plan;
};

// Multiply-adds of causal attention for `tokens` tokens after `first` keys: each (token, head)
// dots and accumulates position + 1 keys of head_dim values: 4 flops per key and dim.
double causal_flops(int first, int tokens) {
  const double keys = static_cast<double>(tokens) * first + tokens * (tokens + 1) / 2.0;
  return 4.0 * kHeads * kHeadDim * keys;
}

TEST(CudaAttentionBench, PromptChunksAndDecodeAtLongContexts) {
  const char* enabled = std::getenv("REALIZAR_CUDA_BENCH");
  if (enabled == nullptr || std::string_view(enabled) != "1") GTEST_SKIP() << "REALIZAR_CUDA_BENCH=1 runs it";
  SKIP_WITHOUT_GPU();
  Bench b;
  std::printf("7B shape, one layer; median of 20 graph replays over %d cache copies\n", kCopies);
  std::printf("%-28s %8s %6s %10s %9s %9s\n", "case", "keys", "split", "us/layer", "TFLOP/s", "tok/s/lyr");
  const auto row = [&](const char* name, int first, int tokens, bool tiled, int splits = 0) {
    const double s = b.seconds(first, tokens, tiled, splits);
    const int used = tiled ? b.last_plan.tile_splits : b.last_plan.decode_splits;
    std::printf("%-28s %8d %6d %10.1f %9.1f %9.0f\n", name, first + tokens, used, s * 1e6,
                causal_flops(first, tokens) / s / 1e12, tokens / s);
  };
  for (const int first : {0, 4096, 15872}) {
    row("chunk 512, tiles", first, 512, true);
    row("chunk 512, decode kernel", first, 512, false);
  }
  for (const int tokens : {16, 64}) {
    row(tokens == 16 ? "chunk 16 @16k, tiles" : "chunk 64 @16k, tiles", 16384, tokens, true);
    row(tokens == 16 ? "chunk 16 @16k, decode kernel" : "chunk 64 @16k, decode kernel", 16384, tokens, false);
  }
  std::printf("%-28s %8s %6s %10s %9s\n", "decode (1 token)", "keys", "split", "us/layer", "GB/s");
  for (const int keys : {4096, 16384}) {
    for (const int splits : {0, 8, 16, 32, 64, 128}) {
      const double s = b.seconds(keys - 1, 1, false, splits);
      const double bytes = 2.0 * keys * kKvDim * 2;  // keys and values, float16
      std::printf("%-28s %8d %6d %10.1f %9.0f%s\n", "decode", keys, b.last_plan.decode_splits, s * 1e6, bytes / s / 1e9,
                  splits == 0 ? "  (plan)" : "");
    }
  }
  const std::vector<float> result = b.out->read();
  for (float v : result) ASSERT_FALSE(std::isnan(v));
}

#endif  // REALIZAR_HAVE_CUDA

}  // namespace
}  // namespace realizar
