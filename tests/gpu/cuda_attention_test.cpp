// The step's attention (kernels.h, `attention`): decode tokens (one CTA per token and KV head) and
// query tiles of prompt chunks (FlashAttention-2 on the tensor cores), alone and mixed in one step,
// with and without split key ranges, against a float64 reference of causal GQA attention over a
// paged float16 cache (blocks from a shuffled pool, in random order, slots outside the tables
// filled with random values too). Shapes: the Qwen2.5 models (14/2, 12/2, 28/4, 40/8 heads, head
// dims 64 and 128), phi-2 (32/32, head 80) and odd ones (head dims 16, 40, 72; groups 1, 3, 7, 8);
// chunks of 1, 17, 64, 100 and 512 tokens starting at 0 or continuing cached keys, up to 15,517
// keys. Outputs and partial buffers are poisoned (NaN) before each run. The split plan and the
// launcher's refusals are checked on the host. Skips the GPU cases without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "realizar/error.h"
#include "realizar/quant.h"

#ifdef REALIZAR_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "backend/cuda/kernels.h"
#include "gpu/cuda_test_support.h"
#endif

namespace realizar {
namespace {

#ifndef REALIZAR_HAVE_CUDA
TEST(CudaAttention, SkippedWithoutCuda) { GTEST_SKIP() << "built without the CUDA backend"; }
#else

using testing::DeviceVector;
using testing::random_floats;

constexpr int kBlock = 16;

// Positions [first, first + count) of sequence `seq`, consecutive tokens of the step.
struct Chunk {
  int seq;
  int first;
  int count;
};

struct StepCase {
  std::string name;
  int heads, kv_heads, head_dim;
  std::vector<Chunk> chunks;
  int min_run = cuda::kFlashMinTokens;  // chunks of at least this many tokens are cut into tiles
  int decode_splits = 0;                // 0: plan_attention's choice
  int tile_splits = 0;
};

// A step laid out as StepPacker lays it out (kv/step_inputs.h) over a paged cache of random
// float16 keys and values, with random queries.
struct PagedStep {
  int q_dim, kv_dim, group, tile_tokens;
  std::vector<int32_t> positions, seq_rows, tables, decode_tokens, tiles;
  int32_t stride = 0;
  std::vector<uint16_t> keys, values;
  std::vector<float> q;
  std::vector<bool> in_tile;  // per step token

  PagedStep(const StepCase& c, std::mt19937_64& rng)
      : q_dim(c.heads * c.head_dim), kv_dim(c.kv_heads * c.head_dim), group(c.heads / c.kv_heads),
        tile_tokens(cuda::flash_tile_tokens(c.heads / c.kv_heads)) {
    std::vector<int> seqs, lengths;  // distinct sequences in order of appearance, their lengths
    for (const Chunk& ch : c.chunks) {
      const auto it = std::find(seqs.begin(), seqs.end(), ch.seq);
      if (it == seqs.end()) {
        seqs.push_back(ch.seq);
        lengths.push_back(ch.first + ch.count);
      } else {
        int& length = lengths[static_cast<size_t>(it - seqs.begin())];
        length = std::max(length, ch.first + ch.count);
      }
    }
    int total_blocks = 5;  // blocks no sequence holds: their random contents must never be read
    for (int length : lengths) {
      stride = std::max(stride, (length + kBlock - 1) / kBlock);
      total_blocks += (length + kBlock - 1) / kBlock;
    }
    std::vector<int32_t> pool(static_cast<size_t>(total_blocks));
    std::iota(pool.begin(), pool.end(), 0);
    std::shuffle(pool.begin(), pool.end(), rng);
    tables.assign(seqs.size() * static_cast<size_t>(stride), 0);
    size_t next = 0;
    for (size_t s = 0; s < seqs.size(); ++s) {
      for (int b = 0; b < (lengths[s] + kBlock - 1) / kBlock; ++b) tables[s * stride + b] = pool[next++];
    }
    keys.resize(static_cast<size_t>(total_blocks) * kBlock * kv_dim);
    values.resize(keys.size());
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    for (auto& h : keys) h = fp32_to_fp16(dist(rng));
    for (auto& h : values) h = fp32_to_fp16(dist(rng));

    for (const Chunk& ch : c.chunks) {
      const auto row = static_cast<int32_t>(std::find(seqs.begin(), seqs.end(), ch.seq) - seqs.begin());
      const auto first_token = static_cast<int32_t>(positions.size());
      for (int j = 0; j < ch.count; ++j) {
        positions.push_back(ch.first + j);
        seq_rows.push_back(row);
      }
      const bool tiled = ch.count >= c.min_run;
      in_tile.insert(in_tile.end(), static_cast<size_t>(ch.count), tiled);
      for (int j = 0; j < ch.count; j += tiled ? tile_tokens : 1) {
        if (!tiled) {
          decode_tokens.push_back(first_token + j);
          continue;
        }
        tiles.insert(tiles.end(), {first_token + j, std::min(tile_tokens, ch.count - j), row, ch.first + j});
      }
    }
    q = random_floats(positions.size() * static_cast<size_t>(q_dim), rng, 2.0f);
  }

  int64_t tokens() const { return static_cast<int64_t>(positions.size()); }
  int64_t tile_count() const { return static_cast<int64_t>(tiles.size() / 4); }
  size_t slot(int t, int j) const {
    return static_cast<size_t>(tables[seq_rows[t] * stride + j / kBlock]) * kBlock + j % kBlock;
  }
};

// The float64 attention of every step token and head, and for tile tokens a bound on the kernel's
// error. Decode tokens keep float32 queries and probabilities: relative error well under 1e-4.
// Tile tokens: the kernel rounds q * scale * log2(e) to float16 (mirrored here: the reference uses
// those queries, so only the float32 dot products remain, at most head_dim * 2^-22 of
// sum_d |q_d k_d| in each base-2 score, which moves weight w_j by that times ln 2 and output e by
// that times |v_je - o_e|) and the probabilities to float16 before P V (relative 2^-11, or 2^-25
// absolute for probabilities below 2^-14, which float16 holds as subnormals); the float32
// accumulation of P V, one rounding (up to 2^-21 of the accumulated magnitude, as tensor cores
// may truncate) per 16-key mma, and the 2^-22 of ex2.approx add (keys / 16 + 16) * 2^-21 of
// sum_j w_j |v_je|. The bound is twice the first-order sum of those terms.
struct Reference {
  std::vector<double> out, bound;
};

Reference reference_attention(const StepCase& c, const PagedStep& s, float scale) {
  Reference r;
  r.out.assign(s.q.size(), 0.0);
  r.bound.assign(s.q.size(), 0.0);
  const int hd = c.head_dim;
  const float q_scale = scale * 1.4426950408889634f;  // as the kernel computes it, in float
  std::vector<double> query(static_cast<size_t>(hd)), o(query.size()), error(query.size());
  std::vector<double> weight, weight_error;
  for (int t = 0; t < s.tokens(); ++t) {
    const int keys = s.positions[t] + 1;
    const bool tiled = s.in_tile[t];
    for (int h = 0; h < c.heads; ++h) {
      const float* qh = s.q.data() + static_cast<size_t>(t) * s.q_dim + h * hd;
      for (int d = 0; d < hd; ++d) {
        query[d] = tiled ? fp16_to_fp32(fp32_to_fp16(qh[d] * q_scale)) : static_cast<double>(qh[d]) * scale;
      }
      const size_t kv_off = static_cast<size_t>(h / s.group) * hd;
      const auto value_row = [&](int j) { return s.values.data() + s.slot(t, j) * s.kv_dim + kv_off; };
      weight.assign(static_cast<size_t>(keys), 0.0);
      weight_error.assign(static_cast<size_t>(keys), 0.0);
      double mx = -INFINITY;
      for (int j = 0; j < keys; ++j) {
        const uint16_t* k = s.keys.data() + s.slot(t, j) * s.kv_dim + kv_off;
        double dot = 0.0, magnitude = 0.0;
        for (int d = 0; d < hd; ++d) {
          const double product = query[d] * fp16_to_fp32(k[d]);
          dot += product;
          magnitude += std::abs(product);
        }
        weight[j] = tiled ? dot * std::log(2.0) : dot;  // natural log units
        weight_error[j] = hd * 0x1p-22 * magnitude * std::log(2.0);
        mx = std::max(mx, weight[j]);
      }
      double total = 0.0;
      for (double& w : weight) total += (w = std::exp(w - mx));
      std::fill(o.begin(), o.end(), 0.0);
      for (int j = 0; j < keys; ++j) {
        const uint16_t* v = value_row(j);
        for (int d = 0; d < hd; ++d) o[d] += weight[j] * fp16_to_fp32(v[d]);
      }
      for (double& x : o) x /= total;
      double* out = r.out.data() + static_cast<size_t>(t) * s.q_dim + h * hd;
      std::copy(o.begin(), o.end(), out);
      if (!tiled) continue;
      std::fill(error.begin(), error.end(), 0.0);
      const double block_terms = (keys / 16.0 + 16.0) * 0x1p-21;
      for (int j = 0; j < keys; ++j) {
        const uint16_t* v = value_row(j);
        const double rounding = std::max(0x1p-11 * weight[j], 0x1p-25) + block_terms * weight[j];
        for (int d = 0; d < hd; ++d) {
          const double value = fp16_to_fp32(v[d]);
          error[d] += weight[j] * weight_error[j] * std::abs(value - o[d]) + rounding * std::abs(value);
        }
      }
      double* bound = r.bound.data() + static_cast<size_t>(t) * s.q_dim + h * hd;
      for (int d = 0; d < hd; ++d) bound[d] = 2.0 * error[d] / total + 1e-6;
    }
  }
  return r;
}

class CudaAttentionStep : public ::testing::TestWithParam<StepCase> {};

TEST_P(CudaAttentionStep, MatchesFloat64CausalAttentionOverThePagedCache) {
  SKIP_WITHOUT_GPU();
  const StepCase& c = GetParam();
  std::mt19937_64 rng(std::hash<std::string>{}(c.name));
  const PagedStep s(c, rng);
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.head_dim)));
  const cuda::AttentionParams p{c.heads, c.kv_heads, c.head_dim, kBlock, scale};
  int multiprocessors = cuda::list_devices()[0].multiprocessors;
  constexpr int64_t kScratchRows = 2048;
  int64_t decode_max_length = 0, tile_max_length = 0;
  for (int t = 0; t < s.tokens(); ++t) {
    (s.in_tile[t] ? tile_max_length : decode_max_length) =
        std::max<int64_t>(s.in_tile[t] ? tile_max_length : decode_max_length, s.positions[t] + 1);
  }
  cuda::AttentionPlan plan = cuda::plan_attention(
      p, {static_cast<int64_t>(s.decode_tokens.size()), decode_max_length, s.tile_count(), tile_max_length},
      multiprocessors, kScratchRows);
  if (c.decode_splits > 0) plan.decode_splits = c.decode_splits;
  if (c.tile_splits > 0) plan.tile_splits = c.tile_splits;
  std::cout << "  " << plan.decode_tokens << " decode tokens x " << plan.decode_splits << " splits, " << plan.tiles
            << " tiles x " << plan.tile_splits << " splits\n";

  const DeviceVector<float> dq(s.q), out(s.q.size());
  const DeviceVector<uint16_t> dk(s.keys), dv(s.values), half(s.q.size());
  const DeviceVector<int32_t> dpos(s.positions), drows(s.seq_rows), dtables(s.tables),
      dstride(std::vector<int32_t>{s.stride}), ddecode(std::max<size_t>(s.decode_tokens.size(), 1)),
      dtiles(std::max<size_t>(s.tiles.size(), 4));
  if (!s.decode_tokens.empty()) {
    ASSERT_EQ(cudaMemcpy(ddecode.get(), s.decode_tokens.data(), s.decode_tokens.size() * 4, cudaMemcpyHostToDevice),
              cudaSuccess);
  }
  if (!s.tiles.empty()) {
    ASSERT_EQ(cudaMemcpy(dtiles.get(), s.tiles.data(), s.tiles.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
  }
  const DeviceVector<float> po(static_cast<size_t>(kScratchRows) * s.q_dim),
      pml(static_cast<size_t>(kScratchRows) * c.heads * 2);
  // A step of decode tokens only with whole 32-value head blocks also writes the int8 blocks.
  const bool quantize = c.head_dim % 32 == 0 && plan.tiles == 0;
  const DeviceVector<int8_t> oq(s.q.size());
  const DeviceVector<float> ods(s.q.size() / 16);
  // Steps without tiles pass no decode list (their decode tokens are the step's tokens in order).
  const cuda::AttentionStep step{dpos.get(),    drows.get(), dtables.get(), dstride.get(),
                                 plan.tiles > 0 ? ddecode.get() : nullptr, dtiles.get()};
  cuda::attention(p, dq.get(), dk.get(), dv.get(), step, plan, {po.get(), pml.get(), kScratchRows}, out.get(),
                  {quantize ? cuda::ActivationsQ8{oq.get(), ods.get()} : cuda::ActivationsQ8{}, half.get()}, nullptr);
  const std::vector<float> result = out.read();

  const Reference ref = reference_attention(c, s, scale);
  double decode_diff = 0.0, decode_ref = 0.0, worst_ratio = 0.0;
  int reported = 0;
  for (size_t i = 0; i < result.size(); ++i) {
    const int t = static_cast<int>(i / s.q_dim);
    ASSERT_FALSE(std::isnan(result[i])) << "token " << t << " element " << i % s.q_dim << " was not written";
    const double diff = std::abs(result[i] - ref.out[i]);
    if (!s.in_tile[t]) {
      decode_diff = std::max(decode_diff, diff);
      decode_ref = std::max(decode_ref, std::abs(ref.out[i]));
      continue;
    }
    worst_ratio = std::max(worst_ratio, diff / ref.bound[i]);
    if (diff > ref.bound[i] && reported++ < 10) {
      ADD_FAILURE() << "tile token " << t << " (position " << s.positions[t] << ") head " << (i % s.q_dim) / c.head_dim
                    << " dim " << i % c.head_dim << ": " << result[i] << " against " << ref.out[i] << ", bound "
                    << ref.bound[i];
    }
  }
  if (decode_ref > 0.0) {
    EXPECT_LE(decode_diff / decode_ref, 1e-4) << "decode tokens";
  }
  std::cout << "  tile tokens: largest error / bound " << worst_ratio << "\n";
  testing::expect_half_of(result, half);
  if (quantize) testing::expect_q8_of(result, oq, ods);
}

// Qwen2.5 shapes: 0.5B 14/2 heads of 64, 1.5B 12/2 of 128, 7B 28/4 of 128, 32B 40/8 of 128.
std::vector<StepCase> step_cases() {
  return {
      // Decode tokens only (the flash-decoding kernel), splits as given.
      {"decode_05b", 14, 2, 64, {{0, 0, 1}, {1, 99, 1}, {2, 999, 1}}, 16, 1, 0},
      {"decode_7b_split5", 28, 4, 128, {{0, 0, 1}, {1, 299, 1}, {2, 2048, 1}}, 16, 5, 0},
      {"decode_15b_split3", 12, 2, 128, {{0, 16, 1}}, 16, 3, 0},
      {"decode_32b_split8", 40, 8, 128, {{0, 39, 1}, {1, 3999, 1}}, 16, 8, 0},
      {"decode_phi2_head80", 32, 32, 80, {{0, 32, 1}, {1, 64, 1}}, 16, 2, 0},
      {"decode_7b_16k_plan", 28, 4, 128, {{0, 16383, 1}}},
      // A whole 512-token prompt chunk, and mixed steps of chunks (first positions 0 and > 0) and
      // decode rows, with the plan's splits.
      {"prefill_7b_512", 28, 4, 128, {{0, 0, 512}}},
      {"mixed_7b", 28, 4, 128, {{0, 300, 100}, {1, 2048, 1}, {2, 0, 17}, {3, 0, 1}, {4, 1000, 64}}},
      {"mixed_05b", 14, 2, 64, {{0, 0, 64}, {1, 1000, 17}, {2, 5, 1}, {3, 40, 100}}},
      {"chunk_7b_after_15500_keys", 28, 4, 128, {{0, 15500, 17}, {1, 700, 1}}},
      // Split tile key ranges (the merge over tiles), odd split counts.
      {"chunks_15b_tile_split3", 12, 2, 128, {{0, 0, 100}, {1, 200, 250}}, 16, 0, 3},
      {"mixed_32b_split8_2", 40, 8, 128, {{0, 64, 64}, {1, 3999, 1}, {2, 0, 100}}, 16, 8, 2},
      // Odd shapes: head 72 with groups of 3, head 40 with 7, head 16 and head 80 without GQA,
      // groups of 8 (16-token tiles).
      {"head72_group3", 6, 2, 72, {{0, 0, 17}, {1, 33, 100}, {2, 69, 1}}},
      {"head72_group3_split2", 6, 2, 72, {{0, 0, 17}, {1, 33, 100}}, 16, 0, 2},
      {"head40_group7", 7, 1, 40, {{0, 5, 64}, {1, 9, 1}}},
      {"head16_group1", 4, 4, 16, {{0, 0, 100}, {1, 200, 17}}},
      {"phi2_head80_group1", 32, 32, 80, {{0, 0, 64}, {1, 130, 20}}, 16, 0, 4},
      {"group8", 16, 2, 128, {{0, 0, 40}, {1, 77, 16}}},
      // Every token a tile (1-token and 3-token tiles), split and not.
      {"tiles_of_1_7b", 28, 4, 128, {{0, 0, 1}, {1, 77, 1}, {2, 10, 3}, {3, 500, 1}}, 1, 0, 1},
      {"tiles_of_1_7b_split3", 28, 4, 128, {{0, 0, 1}, {1, 77, 1}, {2, 10, 3}, {3, 500, 1}}, 1, 0, 3},
  };
}

INSTANTIATE_TEST_SUITE_P(Steps, CudaAttentionStep, ::testing::ValuesIn(step_cases()),
                         [](const auto& info) { return info.param.name; });

std::string error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

// The launcher refuses, before any launch, what it has no kernel for.
TEST(CudaAttention, RefusesShapesSplitsAndCopiesItHasNoKernelFor) {
  const cuda::AttentionStep step{};
  const cuda::AttentionScratch scratch{nullptr, nullptr, 0};
  const auto run = [&](cuda::AttentionParams p, cuda::AttentionPlan plan, cuda::InputCopy copy = {}) {
    return error_of([&] { cuda::attention(p, nullptr, nullptr, nullptr, step, plan, scratch, nullptr, copy, nullptr); });
  };
  const cuda::AttentionParams qwen{28, 4, 128, kBlock, 0.088f};
  EXPECT_EQ(run({28, 4, 136, kBlock, 0.08f}, {1, 1, 0, 1}), "CUDA attention: no kernel for head_dim 136");
  EXPECT_EQ(run({28, 4, 60, kBlock, 0.1f}, {1, 1, 0, 1}), "CUDA attention: no kernel for head_dim 60");
  EXPECT_EQ(run({36, 4, 128, kBlock, 0.088f}, {1, 1, 0, 1}), "CUDA attention: no kernel for query heads per KV head 9");
  EXPECT_EQ(run(qwen, {1, 129, 0, 1}), "CUDA attention: no kernel for decode splits 129");
  EXPECT_EQ(run(qwen, {1, 0, 0, 1}), "CUDA attention: no kernel for decode splits 0");
  EXPECT_EQ(run(qwen, {0, 1, 2, 2}),
            "CUDA attention: no kernel for split partial rows beyond the scratch, rows 72");  // 2 tiles x 18 x 2
  int8_t q8 = 0;
  float ds = 0;
  EXPECT_EQ(run(qwen, {0, 1, 1, 1}, {{&q8, &ds}, nullptr}), "CUDA attention: no kernel for an int8 copy with tiles, tiles 1");
  EXPECT_EQ(run({28, 4, 72, kBlock, 0.1f}, {1, 1, 0, 1}, {{&q8, &ds}, nullptr}),
            "CUDA attention: no kernel for an int8 copy with head_dim 72");
}

// plan_attention on an H200 (132 multiprocessors), 7B shape (4 KV heads, tiles of 18 tokens),
// 2048 scratch rows.
TEST(CudaAttention, PlanSplitsKeysWhereTheGridWouldLeaveMultiprocessorsIdle) {
  const cuda::AttentionParams p{28, 4, 128, kBlock, 0.088f};
  const auto plan = [&](int64_t decode, int64_t decode_keys, int64_t tiles, int64_t tile_keys, int64_t rows = 2048) {
    return cuda::plan_attention(p, {decode, decode_keys, tiles, tile_keys}, 132, rows);
  };
  EXPECT_EQ(plan(1, 100, 0, 0).decode_splits, 1);      // too few keys to split
  EXPECT_EQ(plan(1, 4096, 0, 0).decode_splits, 32);    // 4096 / 128 keys
  EXPECT_EQ(plan(1, 16384, 0, 0).decode_splits, 64);   // the cap: 256 CTAs
  EXPECT_EQ(plan(32, 576, 0, 0).decode_splits, 3);     // 128 CTAs: 3 splits reach 2 per multiprocessor
  EXPECT_EQ(plan(66, 16384, 0, 0).decode_splits, 1);   // 264 CTAs
  EXPECT_EQ(plan(64, 16384, 0, 0, 100).decode_splits, 1);  // the scratch holds 100 rows: 64 x 2 do not fit
  EXPECT_EQ(plan(0, 0, 29, 16384).tile_splits, 1);     // a 512-token chunk: 116 CTAs
  EXPECT_EQ(plan(0, 0, 1, 15517).tile_splits, 33);     // a 17-token chunk after 15,500 keys: 132 CTAs
  EXPECT_EQ(plan(0, 0, 1, 700).tile_splits, 3);        // ranges of at least 256 keys
  EXPECT_EQ(plan(0, 0, 1, 15517, 256).tile_splits, 14);  // 256 scratch rows / 18 per tile
  const cuda::AttentionPlan mixed = plan(3, 2049, 8, 1100);
  EXPECT_EQ(mixed.decode_tokens, 3);
  EXPECT_EQ(mixed.decode_splits, 17);  // ceil(2049 / 128)
  EXPECT_EQ(mixed.tiles, 8);
  EXPECT_EQ(mixed.tile_splits, 4);     // 32 CTAs: 132 / 32
}

#endif  // REALIZAR_HAVE_CUDA

}  // namespace
}  // namespace realizar
