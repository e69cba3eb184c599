// Benchmark of one layer's attention (docs/perf-notes.md, "Causal flash attention for prompt
// chunks" and "Decode attention at long contexts"). Runs only with REALIZAR_CUDA_BENCH=1 (it takes
// seconds and needs a quiet GPU).
//
// - Prompt chunks at the 7B shape (28 query heads, 4 KV heads, head_dim 128): a chunk after 0,
//   4,096 and 15,872 cached keys through the query tiles (FlashAttention-2 kernel, plan_attention's
//   splits) against the same tokens as decode tokens (the decode kernel and its plan);
//   chunks of 16 and 64 tokens after 16,384 keys both ways.
// - Decode: the decode kernel (decode_attention.h, enqueue_decode) with its split plan
//   (decode_splits) at the 7B and 0.5B (14/2 heads of 64) shapes, 1 and 32 tokens (each its own
//   sequence) after 600, 4,096 and 16,384 keys; and at the 7B shape 1 token after 4,096 and 16,384
//   keys at 16-128 splits, to show whether the plan picks well.
//
// Method (as cuda_matvec_bench_test.cpp): kCopies launches in a CUDA graph, each over its own
// shuffled cache blocks (blocks are reused only after the whole 1.1 GB pool, far beyond L2);
// median replay time over the copies is the time per layer. GB/s counts the keys and values read.
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

#include "backend/cuda/decode_attention.h"
#include "backend/cuda/kernels.h"
#include "gpu/cuda_test_support.h"
#endif

namespace realizar {
namespace {

#ifndef REALIZAR_HAVE_CUDA
TEST(CudaAttentionBench, SkippedWithoutCuda) { GTEST_SKIP() << "built without the CUDA backend"; }
#else

using testing::DeviceVector;

constexpr int kBlock = 16;
constexpr int kCopies = 6;
constexpr int kMaxTokens = 512;
constexpr int kMaxSequences = 32;
constexpr int kMaxKeys = 16384 + kMaxTokens;  // keys of the longest case
constexpr int kMaxTableBlocks = kMaxKeys / kBlock;
constexpr size_t kPoolBytes = size_t{1100} << 20;  // each of keys and values
constexpr int64_t kScratchRows = 2048;

struct Shape {
  const char* name;
  int heads, kv_heads, head_dim;
};
constexpr Shape k7B{"7B", 28, 4, 128}, k05B{"0.5B", 14, 2, 64};

// `pool_bytes` of random float16 in [-1, 1): a 1 Mi-value tile from the host, doubled on the device.
std::unique_ptr<DeviceVector<uint16_t>> random_pool(std::mt19937_64& rng) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<uint16_t> tile(size_t{1} << 20);
  for (auto& h : tile) h = fp32_to_fp16(dist(rng));
  auto pool = std::make_unique<DeviceVector<uint16_t>>(kPoolBytes / 2);
  EXPECT_EQ(cudaMemcpy(pool->get(), tile.data(), tile.size() * 2, cudaMemcpyHostToDevice), cudaSuccess);
  for (size_t done = tile.size(); done < kPoolBytes / 2; done *= 2) {
    const size_t n = std::min(done, kPoolBytes / 2 - done);
    EXPECT_EQ(cudaMemcpy(pool->get() + done, pool->get(), n * 2, cudaMemcpyDeviceToDevice), cudaSuccess);
  }
  return pool;
}

struct Bench {
  Shape shape;
  cudaStream_t stream = nullptr;
  int multiprocessors = 0;
  cuda::AttentionParams p;
  int q_dim, kv_dim, pool_blocks;
  std::mt19937_64 rng{5};
  std::vector<int32_t> order;  // the pool's blocks, shuffled
  std::unique_ptr<DeviceVector<uint16_t>> keys, values, half;
  std::unique_ptr<DeviceVector<float>> q, out, partial_o, partial_ml, q8_scales;
  std::unique_ptr<DeviceVector<int8_t>> q8;
  std::unique_ptr<DeviceVector<int32_t>> tables, stride;

  explicit Bench(const Shape& s)
      : shape(s), p{s.heads, s.kv_heads, s.head_dim, kBlock, static_cast<float>(1.0 / std::sqrt(double(s.head_dim)))},
        q_dim(s.heads * s.head_dim), kv_dim(s.kv_heads * s.head_dim),
        pool_blocks(static_cast<int>(kPoolBytes / (size_t{kBlock} * kv_dim * 2))) {
    EXPECT_EQ(cudaStreamCreate(&stream), cudaSuccess);
    multiprocessors = cuda::list_devices()[0].multiprocessors;
    keys = random_pool(rng);
    values = random_pool(rng);
    order.resize(static_cast<size_t>(pool_blocks));
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
    // Row (copy c, sequence i) = c * kMaxSequences + i: its own run of the shuffled pool.
    std::vector<int32_t> table(static_cast<size_t>(kCopies) * kMaxSequences * kMaxTableBlocks);
    for (size_t r = 0; r < table.size() / kMaxTableBlocks; ++r) {
      for (int b = 0; b < kMaxTableBlocks; ++b) {
        table[r * kMaxTableBlocks + b] = order[(r * kMaxTableBlocks + b) % order.size()];
      }
    }
    tables = std::make_unique<DeviceVector<int32_t>>(table);
    stride = std::make_unique<DeviceVector<int32_t>>(std::vector<int32_t>{kMaxTableBlocks});
    q = std::make_unique<DeviceVector<float>>(testing::random_floats(size_t{kMaxTokens} * q_dim, rng, 2.0f));
    out = std::make_unique<DeviceVector<float>>(size_t{kMaxTokens} * q_dim);
    half = std::make_unique<DeviceVector<uint16_t>>(size_t{kMaxTokens} * q_dim);
    q8 = std::make_unique<DeviceVector<int8_t>>(size_t{kMaxSequences} * q_dim);
    q8_scales = std::make_unique<DeviceVector<float>>(size_t{kMaxSequences} * q_dim / 16);
    partial_o = std::make_unique<DeviceVector<float>>(static_cast<size_t>(kScratchRows) * q_dim);
    partial_ml = std::make_unique<DeviceVector<float>>(static_cast<size_t>(kScratchRows) * s.heads * 2);
  }
  ~Bench() { cudaStreamDestroy(stream); }
  cuda::AttentionScratch scratch() const { return {partial_o->get(), partial_ml->get(), kScratchRows}; }

  // Per copy: the seq_rows of `sequences` tokens, one per sequence (copy c's rows).
  std::vector<std::unique_ptr<DeviceVector<int32_t>>> rows_per_copy(int tokens, int sequences) const {
    std::vector<std::unique_ptr<DeviceVector<int32_t>>> rows;
    for (int c = 0; c < kCopies; ++c) {
      std::vector<int32_t> r(static_cast<size_t>(tokens));
      for (int t = 0; t < tokens; ++t) r[t] = c * kMaxSequences + t % sequences;
      rows.push_back(std::make_unique<DeviceVector<int32_t>>(r));
    }
    return rows;
  }

  // One decode token per sequence, `sequences` sequences at `keys` keys each, through the decode
  // kernel with `splits` ranges (0: its plan). Returns seconds per launch; `used` gets the splits.
  double decode_seconds(int sequences, int keys, int splits, int& used) {
    if (splits == 0) splits = cuda::decode_splits(p, sequences, keys, multiprocessors, kScratchRows);
    used = splits;
    const DeviceVector<int32_t> positions(std::vector<int32_t>(static_cast<size_t>(sequences), keys - 1));
    const auto rows = rows_per_copy(sequences, sequences);
    // As the backend: a step without tiles passes no decode list (its tokens in order); the int8
    // copy as the O projection's input of up to 8 tokens, else the float16 copy.
    const cuda::InputCopy copy = sequences > 8 ? cuda::InputCopy{{}, half->get()}
                                               : cuda::InputCopy{{q8->get(), q8_scales->get()}, nullptr};
    return testing::median_launch_seconds(kCopies, stream, [&](int c) {
      const cuda::AttentionStep step{positions.get(), rows[static_cast<size_t>(c)]->get(), tables->get(), stride->get(),
                                     nullptr, nullptr, sequences};
      cuda::enqueue_decode(p, q->get(), keys_ptr(), values_ptr(), step, sequences, splits, scratch(),
                           out->get(), copy, stream);
    });
  }

  // `tokens` consecutive tokens at positions [first, first + tokens) of one sequence, as decode
  // tokens (tiled false) or query tiles, through `attention` with plan_attention's plan (tile
  // splits as given when not 0); copy c's launch reads table row c * kMaxSequences.
  double chunk_seconds(int first, int tokens, bool tiled, cuda::AttentionPlan& plan) {
    std::vector<int32_t> pos(static_cast<size_t>(tokens));
    std::iota(pos.begin(), pos.end(), first);
    const int tile_tokens = cuda::flash_tile_tokens(shape.heads / shape.kv_heads);
    std::vector<std::unique_ptr<DeviceVector<int32_t>>> copy_tiles;
    int64_t tile_count = 0;
    for (int c = 0; c < kCopies; ++c) {
      std::vector<int32_t> tiles;
      for (int t = 0; tiled && t < tokens; t += tile_tokens) {
        tiles.insert(tiles.end(), {t, std::min(tile_tokens, tokens - t), c * kMaxSequences, first + t});
      }
      tile_count = static_cast<int64_t>(tiles.size() / 4);
      if (tiles.empty()) tiles.assign(4, 0);
      copy_tiles.push_back(std::make_unique<DeviceVector<int32_t>>(tiles));
    }
    const DeviceVector<int32_t> positions(pos);
    const auto rows = rows_per_copy(tokens, 1);
    const cuda::AttentionWork work{tiled ? 0 : tokens, tiled ? 0 : first + tokens, tile_count,
                                   tile_count == 0 ? 0 : first + tokens};
    plan = cuda::plan_attention(p, work, multiprocessors, kScratchRows);
    const cuda::InputCopy copy = tokens > 8 ? cuda::InputCopy{{}, half->get()}
                                            : cuda::InputCopy{{q8->get(), q8_scales->get()}, nullptr};
    return testing::median_launch_seconds(kCopies, stream, [&](int c) {
      const cuda::AttentionStep step{positions.get(), rows[static_cast<size_t>(c)]->get(), tables->get(),
                                     stride->get(),   nullptr, copy_tiles[static_cast<size_t>(c)]->get()};
      cuda::attention(p, q->get(), keys_ptr(), values_ptr(), step, plan, scratch(), out->get(), copy, stream);
    });
  }

  const void* keys_ptr() const { return keys->get(); }
  const void* values_ptr() const { return values->get(); }
  // The first `tokens` rows of the output hold no NaN (a kernel left nothing unwritten).
  void expect_written(int tokens) const {
    const std::vector<float> result = out->read();
    for (size_t i = 0; i < static_cast<size_t>(tokens) * q_dim; ++i) ASSERT_FALSE(std::isnan(result[i])) << i;
  }
};

bool bench_enabled() {
  const char* enabled = std::getenv("REALIZAR_CUDA_BENCH");
  return enabled != nullptr && std::string_view(enabled) == "1";
}

// Multiply-adds of causal attention for `tokens` tokens after `first` keys: each (token, head)
// dots and accumulates position + 1 keys of head_dim values: 4 flops per key and dim.
double causal_flops(const Shape& s, int first, int tokens) {
  const double keys = static_cast<double>(tokens) * first + tokens * (tokens + 1) / 2.0;
  return 4.0 * s.heads * s.head_dim * keys;
}

TEST(CudaAttentionBench, PromptChunksAtLongContexts) {
  if (!bench_enabled()) GTEST_SKIP() << "REALIZAR_CUDA_BENCH=1 runs it";
  SKIP_WITHOUT_GPU();
  Bench b(k7B);
  std::printf("7B shape, one layer; median of 20 graph replays over %d cache copies\n", kCopies);
  std::printf("%-30s %8s %6s %10s %9s %9s\n", "case", "keys", "split", "us/layer", "TFLOP/s", "tok/s/lyr");
  const auto row = [&](const char* name, int first, int tokens, bool tiled) {
    cuda::AttentionPlan plan;
    const double s = b.chunk_seconds(first, tokens, tiled, plan);
    std::printf("%-30s %8d %6d %10.1f %9.1f %9.0f\n", name, first + tokens, tiled ? plan.tile_splits : plan.decode_splits,
                s * 1e6, causal_flops(b.shape, first, tokens) / s / 1e12, tokens / s);
  };
  for (const int first : {0, 4096, 15872}) {
    row("chunk 512, tiles", first, 512, true);
    row("chunk 512, decode kernel", first, 512, false);
  }
  for (const int tokens : {16, 64}) {
    row(tokens == 16 ? "chunk 16 @16k, tiles" : "chunk 64 @16k, tiles", 16384, tokens, true);
    row(tokens == 16 ? "chunk 16 @16k, decode kernel" : "chunk 64 @16k, decode kernel", 16384, tokens, false);
  }
  b.expect_written(kMaxTokens);
}

TEST(CudaAttentionBench, DecodeTokensAtLongContexts) {
  if (!bench_enabled()) GTEST_SKIP() << "REALIZAR_CUDA_BENCH=1 runs it";
  SKIP_WITHOUT_GPU();
  std::printf("decode, one layer; median of 20 graph replays over %d launches on distinct blocks\n", kCopies);
  std::printf("%-5s %6s %6s %6s %10s %9s\n", "shape", "tokens", "keys", "split", "us/layer", "GB/s");
  for (const Shape& shape : {k7B, k05B}) {
    Bench b(shape);
    const auto row = [&](int tokens, int keys, int splits) {
      int used = 0;
      const double s = b.decode_seconds(tokens, keys, splits, used);
      const double bytes = 2.0 * tokens * keys * b.kv_dim * 2;  // keys and values, float16
      std::printf("%-5s %6d %6d %6d %10.1f %9.0f%s\n", shape.name, tokens, keys, used, s * 1e6, bytes / s / 1e9,
                  splits == 0 ? "  (plan)" : "");
    };
    for (const int tokens : {1, 32}) {
      for (const int keys : {600, 4096, 16384}) row(tokens, keys, 0);
    }
    if (shape.head_dim == k7B.head_dim) {
      for (const int keys : {4096, 16384}) {
        for (const int splits : {16, 32, 64, 128}) row(1, keys, splits);
      }
    }
    b.expect_written(kMaxSequences);
  }
}

#endif  // REALIZAR_HAVE_CUDA

}  // namespace
}  // namespace realizar
