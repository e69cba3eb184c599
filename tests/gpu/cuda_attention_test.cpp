// The step's attention (kernels.h, `attention`): decode tokens (one CTA per token and KV head) and
// query tiles of prompt chunks (FlashAttention-2 on the tensor cores), alone and mixed in one step,
// with and without split key ranges, against a float64 reference of causal GQA attention over a
// paged float16 cache (blocks from a shuffled pool, in random order, slots outside the tables
// filled with random values too). Shapes: the Qwen2.5 models (14/2, 12/2, 28/4, 40/8 heads, head
// dims 64 and 128), phi-2 (32/32, head 80) and odd ones (head dims 8-120; groups 1-8); chunks of
// 1, 17, 64, 100 and 512 tokens starting at 0 or continuing cached keys, up to 17,000 keys; steps
// of up to 32 decode tokens of different sequences. Every step runs through the launcher with
// plan_attention's plan or given splits (up to 128, ranges left empty); every decode-only step
// also through the decode entry (decode_attention.h, enqueue_decode) with its tokens listed in
// reverse order (CTA x serves step token tokens - 1 - x). Outputs and partial buffers are poisoned
// (NaN) before each run. The split plans and the launchers' refusals are checked on the host.
// Skips the GPU cases without a GPU.
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
#include "test_support.h"

#ifdef REALIZAR_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "backend/cuda/decode_attention.h"
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

// The float64 attention of every step token and head, and a bound on the kernels' error (decode
// and tile tokens alike are computed in float16 on the tensor cores). The kernels round q * scale
// * log2(e) to float16 (mirrored here: the reference uses those queries, so only the float32 dot
// products remain, at most head_dim * 2^-22 of
// sum_d |q_d k_d| in each base-2 score, which moves weight w_j by that times ln 2 and output e by
// that times |v_je - o_e|) and the probabilities to float16 before P V (relative 2^-11, or 2^-25
// absolute for probabilities below 2^-14, which float16 holds as subnormals); the float32
// accumulation of P V, one rounding (up to 2^-21 of the accumulated magnitude, as tensor cores
// may truncate) per 16-key mma, and the 2^-22 of ex2.approx add (keys / 16 + 16) * 2^-21 of
// sum_j w_j |v_je|. The bound is twice the first-order sum of those terms. (The decode kernel
// computes as the tiles do, one 16-key mma per group of keys; its merges of warps and ranges add
// float32 roundings far inside the factor 2.)
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
    for (int h = 0; h < c.heads; ++h) {
      const float* qh = s.q.data() + static_cast<size_t>(t) * s.q_dim + h * hd;
      for (int d = 0; d < hd; ++d) query[d] = fp16_to_fp32(fp32_to_fp16(qh[d] * q_scale));
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
        weight[j] = dot * std::log(2.0);  // natural log units
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

constexpr int64_t kScratchRows = 2048;

// A step's inputs on the device, and a run of some attention over them into outputs poisoned
// (NaN) beforehand, checked against the reference.
struct DeviceStep {
  const StepCase& c;
  const PagedStep& s;
  cuda::AttentionParams p;
  DeviceVector<float> q;
  DeviceVector<uint16_t> keys, values;
  DeviceVector<int32_t> positions, rows, tables, stride, decode, tiles;

  DeviceStep(const StepCase& step_case, const PagedStep& step)
      : c(step_case), s(step),
        p{c.heads, c.kv_heads, c.head_dim, kBlock, static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.head_dim)))},
        q(s.q), keys(s.keys), values(s.values), positions(s.positions), rows(s.seq_rows), tables(s.tables),
        stride(std::vector<int32_t>{s.stride}), decode(std::max<size_t>(s.decode_tokens.size(), 1)),
        tiles(std::max<size_t>(s.tiles.size(), 4)) {
    if (!s.decode_tokens.empty()) {
      EXPECT_EQ(cudaMemcpy(decode.get(), s.decode_tokens.data(), s.decode_tokens.size() * 4, cudaMemcpyHostToDevice),
                cudaSuccess);
    }
    if (!s.tiles.empty()) {
      EXPECT_EQ(cudaMemcpy(tiles.get(), s.tiles.data(), s.tiles.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
    }
  }

  // Steps without tiles pass no decode list (their decode tokens are the step's tokens in order).
  cuda::AttentionStep step() const {
    return {positions.get(), rows.get(), tables.get(), stride.get(), s.tiles.empty() ? nullptr : decode.get(),
            tiles.get(), static_cast<int64_t>(s.positions.size())};
  }

  // enqueue(step, scratch, out, copy) enqueues the attention; with `quantize` the copy asks for the
  // int8 blocks too (whole 32-value head blocks, decode tokens only). Checks the output against
  // the float64 reference within its float16 bound, and the copies against the output.
  template <class Enqueue>
  void run_and_check(bool quantize, Enqueue&& enqueue) const {
    const DeviceVector<float> out(s.q.size()), po(static_cast<size_t>(kScratchRows) * s.q_dim),
        pml(static_cast<size_t>(kScratchRows) * c.heads * 2), ods(s.q.size() / 16);
    const DeviceVector<uint16_t> half(s.q.size());
    const DeviceVector<int8_t> oq(s.q.size());
    enqueue(step(), cuda::AttentionScratch{po.get(), pml.get(), kScratchRows}, out.get(),
            cuda::InputCopy{quantize ? cuda::ActivationsQ8{oq.get(), ods.get()} : cuda::ActivationsQ8{}, half.get()});
    const std::vector<float> result = out.read();

    const Reference ref = reference_attention(c, s, p.scale);
    double worst_ratio = 0.0;
    int reported = 0;
    for (size_t i = 0; i < result.size(); ++i) {
      const int t = static_cast<int>(i / s.q_dim);
      ASSERT_FALSE(std::isnan(result[i])) << "token " << t << " element " << i % s.q_dim << " was not written";
      const double diff = std::abs(result[i] - ref.out[i]);
      worst_ratio = std::max(worst_ratio, diff / ref.bound[i]);
      if (diff > ref.bound[i] && reported++ < 10) {
        ADD_FAILURE() << (s.in_tile[t] ? "tile" : "decode") << " token " << t << " (position " << s.positions[t]
                      << ") head " << (i % s.q_dim) / c.head_dim << " dim " << i % c.head_dim << ": " << result[i]
                      << " against " << ref.out[i] << ", bound " << ref.bound[i];
      }
    }
    std::cout << "  largest error / bound " << worst_ratio << "\n";
    testing::expect_half_of(result, half);
    if (quantize) testing::expect_q8_of(result, oq, ods);
  }

  int64_t decode_max_length() const { return max_length(false); }
  int64_t tile_max_length() const { return max_length(true); }

 private:
  int64_t max_length(bool tiled) const {
    int64_t most = 0;
    for (int t = 0; t < s.tokens(); ++t) {
      if (s.in_tile[t] == tiled) most = std::max<int64_t>(most, s.positions[t] + 1);
    }
    return most;
  }
};

int multiprocessors() { return cuda::list_devices()[0].multiprocessors; }

// The production launcher: plan_attention's plan (splits as the case gives), `attention`.
class CudaAttentionStep : public ::testing::TestWithParam<StepCase> {};

TEST_P(CudaAttentionStep, MatchesFloat64CausalAttentionOverThePagedCache) {
  SKIP_WITHOUT_GPU();
  const StepCase& c = GetParam();
  std::mt19937_64 rng(std::hash<std::string>{}(c.name));
  const PagedStep s(c, rng);
  const DeviceStep d(c, s);
  cuda::AttentionPlan plan = cuda::plan_attention(
      d.p, {static_cast<int64_t>(s.decode_tokens.size()), d.decode_max_length(), s.tile_count(), d.tile_max_length()},
      multiprocessors(), kScratchRows);
  if (c.decode_splits > 0) plan.decode_splits = c.decode_splits;
  if (c.tile_splits > 0) plan.tile_splits = c.tile_splits;
  std::cout << "  " << plan.decode_tokens << " decode tokens x " << plan.decode_splits << " splits, " << plan.tiles
            << " tiles x " << plan.tile_splits << " splits\n";
  // A step of decode tokens only with whole 32-value head blocks also writes the int8 blocks.
  const bool quantize = c.head_dim % 32 == 0 && plan.tiles == 0;
  d.run_and_check(quantize, [&](const cuda::AttentionStep& step, const cuda::AttentionScratch& scratch, float* out,
                      cuda::InputCopy copy) { cuda::attention(d.p, d.q.get(), d.keys.get(), d.values.get(), step, plan,
                                                              scratch, out, copy, nullptr); });
}

// The decode entry called directly (enqueue_decode) with the decode_splits plan or the case's
// splits, the step's tokens listed in reverse order: CTA x and partial rows x * splits + s serve
// step token tokens - 1 - x, which the kernel and the merge must not confuse.
class CudaDecode : public ::testing::TestWithParam<StepCase> {};

TEST_P(CudaDecode, MatchesFloat64CausalAttentionThroughTheDecodeList) {
  SKIP_WITHOUT_GPU();
  const StepCase& c = GetParam();
  std::mt19937_64 rng(std::hash<std::string>{}(c.name));
  const PagedStep s(c, rng);
  ASSERT_EQ(s.tile_count(), 0) << "a decode-only case";
  const DeviceStep d(c, s);
  const int64_t tokens = s.tokens();
  const int splits = c.decode_splits > 0
                         ? c.decode_splits
                         : cuda::decode_splits(d.p, tokens, d.decode_max_length(), multiprocessors(), kScratchRows);
  std::cout << "  " << tokens << " decode tokens x " << splits << " splits, listed in reverse\n";
  std::vector<int32_t> reversed(s.decode_tokens.rbegin(), s.decode_tokens.rend());
  const DeviceVector<int32_t> order(reversed);
  d.run_and_check(c.head_dim % 32 == 0, [&](cuda::AttentionStep step, const cuda::AttentionScratch& scratch,
                                            float* out, cuda::InputCopy copy) {
    step.decode_tokens = order.get();
    cuda::enqueue_decode(d.p, d.q.get(), d.keys.get(), d.values.get(), step, tokens, splits, scratch, out, copy,
                         nullptr);
  });
}

// `count` decode tokens of as many sequences, positions spread over [first, first + spread).
std::vector<Chunk> decode_rows(int count, int first, int spread) {
  std::vector<Chunk> rows;
  for (int i = 0; i < count; ++i) rows.push_back({i, first + (i * 7919) % spread, 1});
  return rows;
}

// Steps of decode tokens only. Qwen2.5 shapes: 0.5B 14/2 heads of 64, 1.5B 12/2 of 128, 7B 28/4
// of 128, 32B 40/8 of 128; phi-2 32/32 of 80.
std::vector<StepCase> decode_cases() {
  std::vector<StepCase> cases = {
      // Splits as given (0: the kernel's plan).
      {"decode_05b", 14, 2, 64, {{0, 0, 1}, {1, 99, 1}, {2, 999, 1}}, 16, 1, 0},
      {"decode_7b_split5", 28, 4, 128, {{0, 0, 1}, {1, 299, 1}, {2, 2048, 1}}, 16, 5, 0},
      {"decode_15b_split3", 12, 2, 128, {{0, 16, 1}}, 16, 3, 0},
      {"decode_32b_split8", 40, 8, 128, {{0, 39, 1}, {1, 3999, 1}}, 16, 8, 0},
      {"decode_phi2_head80", 32, 32, 80, {{0, 32, 1}, {1, 64, 1}}, 16, 2, 0},
      {"decode_7b_16k_plan", 28, 4, 128, {{0, 16383, 1}}},
      // The longest contexts, split by the plan and not at all (a warp walks 266 groups).
      {"decode_7b_17000_keys", 28, 4, 128, {{0, 16999, 1}}},
      {"decode_7b_17000_keys_unsplit", 28, 4, 128, {{0, 16999, 1}}, 16, 1, 0},
      // The most splits, most of them empty for the short token; empty ranges at 8 splits.
      {"decode_7b_split128", 28, 4, 128, {{0, 3999, 1}, {1, 77, 1}}, 16, 128, 0},
      {"decode_05b_empty_ranges", 14, 2, 64, {{0, 0, 1}, {1, 20, 1}, {2, 200, 1}}, 16, 8, 0},
      // Parallel decode: 32 sequences at 500-700 keys, planned and unsplit; 0.5B at 1-4,000.
      {"parallel32_7b", 28, 4, 128, decode_rows(32, 500, 200)},
      {"parallel32_7b_unsplit", 28, 4, 128, decode_rows(32, 500, 200), 16, 1, 0},
      {"parallel32_05b", 14, 2, 64, decode_rows(32, 0, 4000)},
      // Odd head dims (8-120: 16-byte pieces short of the padded width) and groups.
      {"head8_group2", 2, 1, 8, {{0, 0, 1}, {1, 40, 1}, {2, 700, 1}}},
      {"head16_group1", 4, 4, 16, {{0, 5, 1}, {1, 333, 1}}},
      {"head24_group3", 3, 1, 24, {{0, 17, 1}, {1, 250, 1}}, 16, 3, 0},
      {"head40_group7", 7, 1, 40, {{0, 9, 1}, {1, 1000, 1}}},
      {"head72_group3", 6, 2, 72, {{0, 69, 1}, {1, 600, 1}}},
      {"head96_group4", 8, 2, 96, {{0, 15, 1}, {1, 2100, 1}}},
      {"head96_group4_unsplit", 8, 2, 96, {{0, 15, 1}, {1, 2100, 1}}, 16, 1, 0},
      {"head120_group5", 10, 2, 120, {{0, 31, 1}, {1, 1234, 1}}},
  };
  // Groups 1-8 at head dims 64 and 128, four sequences of 1 to 1,501 keys, the plan's splits.
  for (const int head_dim : {64, 128}) {
    for (int group = 1; group <= 8; ++group) {
      const int kv_heads = group == 5 || group == 7 ? 1 : 2;
      cases.push_back({"group" + std::to_string(group) + "_head" + std::to_string(head_dim), group * kv_heads, kv_heads,
                       head_dim, {{0, 0, 1}, {1, 16, 1}, {2, 300, 1}, {3, 1500, 1}}});
    }
  }
  return cases;
}

// Steps with prompt chunks (tiles), alone or mixed with decode tokens.
std::vector<StepCase> tile_cases() {
  return {
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
      {"chunks_head72_group3", 6, 2, 72, {{0, 0, 17}, {1, 33, 100}, {2, 69, 1}}},
      {"chunks_head72_group3_split2", 6, 2, 72, {{0, 0, 17}, {1, 33, 100}}, 16, 0, 2},
      {"chunks_head40_group7", 7, 1, 40, {{0, 5, 64}, {1, 9, 1}}},
      {"chunks_head16_group1", 4, 4, 16, {{0, 0, 100}, {1, 200, 17}}},
      {"phi2_head80_group1", 32, 32, 80, {{0, 0, 64}, {1, 130, 20}}, 16, 0, 4},
      {"group8", 16, 2, 128, {{0, 0, 40}, {1, 77, 16}}},
      // Every token a tile (1-token and 3-token tiles), split and not.
      {"tiles_of_1_7b", 28, 4, 128, {{0, 0, 1}, {1, 77, 1}, {2, 10, 3}, {3, 500, 1}}, 1, 0, 1},
      {"tiles_of_1_7b_split3", 28, 4, 128, {{0, 0, 1}, {1, 77, 1}, {2, 10, 3}, {3, 500, 1}}, 1, 0, 3},
  };
}

std::vector<StepCase> step_cases() {
  std::vector<StepCase> cases = decode_cases();
  for (StepCase& c : tile_cases()) cases.push_back(std::move(c));
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Steps, CudaAttentionStep, ::testing::ValuesIn(step_cases()),
                         [](const auto& info) { return info.param.name; });

INSTANTIATE_TEST_SUITE_P(Decode, CudaDecode, ::testing::ValuesIn(decode_cases()),
                         [](const auto& info) { return info.param.name; });

using realizar::testing::error_of;

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
  // Decode tokens read whole 16-key groups, which must not straddle a cache block (the backend's
  // blocks hold 16 keys); tiles read key by key and take any block size.
  EXPECT_EQ(run({28, 4, 128, 8, 0.088f}, {1, 1, 0, 1}),
            "CUDA attention: no kernel for decode tokens with a KV block size not a multiple of 16, block size 8");
  EXPECT_EQ(run({28, 4, 128, 24, 0.088f}, {2, 1, 1, 1}),
            "CUDA attention: no kernel for decode tokens with a KV block size not a multiple of 16, block size 24");
  // The decode entry checks as the launcher does.
  const auto decode = [&](cuda::AttentionParams p, int splits, cuda::InputCopy copy = {}) {
    return error_of([&] {
      cuda::enqueue_decode(p, nullptr, nullptr, nullptr, step, 1, splits, scratch, nullptr, copy, nullptr);
    });
  };
  EXPECT_EQ(decode({28, 4, 128, 8, 0.088f}, 1),
            "CUDA attention: no kernel for decode tokens with a KV block size not a multiple of 16, block size 8");
  EXPECT_EQ(decode({28, 4, 136, kBlock, 0.08f}, 1), "CUDA attention: no kernel for head_dim 136");
  EXPECT_EQ(decode(qwen, 129), "CUDA attention: no kernel for decode splits 129");
  EXPECT_EQ(decode(qwen, 2), "CUDA attention: no kernel for split partial rows beyond the scratch, rows 2");
  EXPECT_EQ(decode({28, 4, 72, kBlock, 0.1f}, 1, {{&q8, &ds}, nullptr}),
            "CUDA attention: no kernel for an int8 copy with head_dim 72");
}

// decode_splits on an H200 (132 multiprocessors), 7B shape (4 KV heads) unless said, 2048 scratch
// rows: one wave of as many CTAs as fit at once (by shared memory), rounded down; ranges of at
// least two 16-key groups per warp (128 keys).
TEST(CudaAttention, DecodeSplitsFillTheMultiprocessorsOnce) {
  const cuda::AttentionParams p{28, 4, 128, kBlock, 0.088f}, p05{14, 2, 64, kBlock, 0.125f};
  const auto splits = [&](int64_t tokens, int64_t keys, int64_t rows = 2048) {
    return cuda::decode_splits(p, tokens, keys, 132, rows);
  };
  EXPECT_EQ(cuda::decode_ctas_per_multiprocessor(128), 2);  // 104 KiB each
  EXPECT_EQ(cuda::decode_ctas_per_multiprocessor(64), 4);
  EXPECT_EQ(splits(1, 128), 1);          // too few keys to split
  EXPECT_EQ(splits(1, 4096), 32);        // 4096 / 128 keys
  EXPECT_EQ(splits(1, 16384), 66);       // 264 CTAs
  EXPECT_EQ(splits(32, 600), 2);         // 256 of 264 CTAs; 3 would start a second wave
  EXPECT_EQ(splits(66, 16384), 1);       // 264 CTAs
  EXPECT_EQ(splits(2, 16384, 20), 10);   // 20 scratch rows for 2 tokens
  EXPECT_EQ(splits(3, 2049), 17);        // ceil(2049 / 128)
  EXPECT_EQ(splits(0, 4096), 1);         // no decode tokens
  EXPECT_EQ(cuda::decode_splits(p05, 1, 16384, 132, 2048), 128);  // the most: 256 of 528 CTAs
  EXPECT_EQ(cuda::decode_splits(p05, 32, 4096, 132, 2048), 8);    // 512 of 528 CTAs
}

// plan_attention on an H200 (132 multiprocessors), 7B shape (4 KV heads, tiles of 18 tokens),
// 2048 scratch rows: decode tokens as decode_splits gives, tiles split where
// (tiles x KV heads) CTAs would leave multiprocessors idle.
TEST(CudaAttention, PlanSplitsKeysWhereTheGridWouldLeaveMultiprocessorsIdle) {
  const cuda::AttentionParams p{28, 4, 128, kBlock, 0.088f};
  const auto plan = [&](int64_t decode, int64_t decode_keys, int64_t tiles, int64_t tile_keys, int64_t rows = 2048) {
    return cuda::plan_attention(p, {decode, decode_keys, tiles, tile_keys}, 132, rows);
  };
  for (const auto& [tokens, keys] : {std::pair<int64_t, int64_t>{1, 100}, {1, 4096}, {1, 16384}, {32, 576}, {3, 2049}}) {
    EXPECT_EQ(plan(tokens, keys, 0, 0).decode_splits, cuda::decode_splits(p, tokens, keys, 132, 2048))
        << tokens << " tokens, " << keys << " keys";
  }
  EXPECT_EQ(plan(0, 0, 29, 16384).tile_splits, 1);     // a 512-token chunk: 116 CTAs
  EXPECT_EQ(plan(0, 0, 1, 15517).tile_splits, 33);     // a 17-token chunk after 15,500 keys: 132 CTAs
  EXPECT_EQ(plan(0, 0, 1, 700).tile_splits, 3);        // ranges of at least 256 keys
  EXPECT_EQ(plan(0, 0, 1, 15517, 256).tile_splits, 14);  // 256 scratch rows / 18 per tile
  const cuda::AttentionPlan mixed = plan(3, 2049, 8, 1100);
  EXPECT_EQ(mixed.decode_tokens, 3);
  EXPECT_EQ(mixed.decode_splits, cuda::decode_splits(p, 3, 2049, 132, 2048));
  EXPECT_EQ(mixed.tiles, 8);
  EXPECT_EQ(mixed.tile_splits, 4);     // 32 CTAs: 132 / 32
}

#endif  // REALIZAR_HAVE_CUDA

}  // namespace
}  // namespace realizar
