// Each CUDA kernel against a float64 scalar computation of the same function, on fresh random
// inputs at the real models' shapes (hidden 896/1536/3584/5120, FFN 18944, GQA 7:1, 6:1, 5:1)
// and at odd sizes. Skips without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <utility>
#include <vector>

#include "realizar/error.h"
#include "realizar/quant.h"
#include "realizar/sampling.h"
#include "realizar/tensor_type.h"

#ifdef REALIZAR_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "backend/cuda/kernels.h"
#include "gpu/cuda_test_support.h"
#endif

namespace realizar {
namespace {

#ifndef REALIZAR_HAVE_CUDA
TEST(CudaKernels, SkippedWithoutCuda) { GTEST_SKIP() << "built without the CUDA backend"; }
#else

using testing::DeviceVector;
using testing::expect_half_of;
using testing::expect_q8_of;
using testing::HostQ8;
using testing::quantize_q8_on_host;
using testing::random_floats;

// max |a - b| / max |b| over all elements; NaN in `a` gives infinity.
double relative_max_error(const std::vector<float>& a, const std::vector<double>& b) {
  double diff = 0.0, ref = 0.0;
  for (size_t i = 0; i < b.size(); ++i) {
    if (std::isnan(a[i])) return INFINITY;
    diff = std::max(diff, std::abs(a[i] - b[i]));
    ref = std::max(ref, std::abs(b[i]));
  }
  return diff / ref;
}

// A random quantized matrix and its dequantized float copy.
struct QuantMatrix {
  TensorType type;
  int64_t rows, cols;
  size_t row_bytes;
  std::vector<uint8_t> bytes;
  std::vector<float> values;

  QuantMatrix(TensorType t, int64_t r, int64_t c, std::mt19937_64& rng)
      : type(t), rows(r), cols(c), row_bytes(row_bytes_of(t, c)) {
    bytes.resize(row_bytes * static_cast<size_t>(rows));
    values.resize(static_cast<size_t>(rows * cols));
    for (int64_t i = 0; i < rows; ++i) {
      const std::vector<float> src = random_floats(static_cast<size_t>(cols), rng);
      quantize_row(type, src.data(), bytes.data() + i * row_bytes, cols);
      dequantize_row(type, bytes.data() + i * row_bytes, values.data() + i * cols, cols);
    }
  }
  static size_t row_bytes_of(TensorType t, int64_t c) {
    return static_cast<size_t>(::realizar::row_bytes(t, static_cast<uint64_t>(c)));
  }
  cuda::DeviceMatrix on_device(const DeviceVector<uint8_t>& d) const {
    return {static_cast<uint32_t>(type), rows, cols, row_bytes, d.get()};
  }
};

struct MatvecCase {
  TensorType type;
  int64_t rows, cols, tokens;
};

bool is_float_type(TensorType t) {
  return t == TensorType::F32 || t == TensorType::F16 || t == TensorType::BF16;
}

class CudaMatvec : public ::testing::TestWithParam<MatvecCase> {};

// Float types: float32 activations. Quantized types: the activations are quantized to int8
// blocks on the device (checked bit for bit against the host quantizer), then the reference is
// the float64 dot product of the dequantized weights with the dequantized int8 activations.
TEST_P(CudaMatvec, MatchesFloat64DotProductsOfTheDequantizedRows) {
  SKIP_WITHOUT_GPU();
  const MatvecCase c = GetParam();
  std::mt19937_64 rng(static_cast<uint64_t>(c.rows * 131 + c.cols * 7 + c.tokens));
  const QuantMatrix w(c.type, c.rows, c.cols, rng);
  const std::vector<float> x = random_floats(static_cast<size_t>(c.tokens * c.cols), rng);
  const std::vector<float> bias = random_floats(static_cast<size_t>(c.rows), rng);
  const std::vector<float> y0 = random_floats(static_cast<size_t>(c.tokens * c.rows), rng);
  const bool accumulate = c.tokens % 2 == 1;  // both epilogues over the cases
  const bool int8 = !is_float_type(c.type);
  ASSERT_EQ(cuda::matvec_reads_int8(static_cast<uint32_t>(c.type)), int8);
  const HostQ8 xq = quantize_q8_on_host(x);

  std::vector<double> ref(y0.size());
  for (int64_t t = 0; t < c.tokens; ++t) {
    for (int64_t r = 0; r < c.rows; ++r) {
      double sum = bias[r] + (accumulate ? y0[t * c.rows + r] : 0.0);
      for (int64_t k = 0; k < c.cols; ++k) {
        const size_t at = static_cast<size_t>(t * c.cols + k);
        sum += static_cast<double>(w.values[r * c.cols + k]) * (int8 ? xq.values[at] : x[at]);
      }
      ref[t * c.rows + r] = sum;
    }
  }
  const DeviceVector<uint8_t> dw(w.bytes);
  const DeviceVector<float> dx(x), db(bias), dy(y0);
  if (int8) {
    const DeviceVector<int8_t> q(x.size());
    const DeviceVector<float> ds(x.size() / 16);
    cuda::quantize_activations(dx.get(), c.cols, c.tokens, {q.get(), ds.get()}, nullptr);
    ASSERT_EQ(q.read(), xq.q);
    ASSERT_EQ(ds.read(), xq.ds);
    cuda::matvec_int8(w.on_device(dw), {q.get(), ds.get()}, dy.get(), c.rows, db.get(), accumulate,
                      c.tokens, nullptr);
    // Exact integer block sums; float32 only in the per-block scaling and the sum over blocks.
    EXPECT_LE(relative_max_error(dy.read(), ref), 1e-5);
  } else {
    cuda::matvec(w.on_device(dw), dx.get(), c.cols, dy.get(), c.rows, db.get(), accumulate,
                 c.tokens, nullptr);
    // float32 accumulation of `cols` products: relative rounding far below 1e-5.
    EXPECT_LE(relative_max_error(dy.read(), ref), 1e-5);
  }
}

std::vector<MatvecCase> matvec_cases() {
  std::vector<MatvecCase> cases;
  for (TensorType t : {TensorType::F32, TensorType::F16, TensorType::BF16, TensorType::Q4_0,
                       TensorType::Q4_1, TensorType::Q5_0, TensorType::Q8_0}) {
    cases.push_back({t, 37, 896, 1});
    cases.push_back({t, 130, 1536, 5});
    cases.push_back({t, 64, 4864, 11});  // 0.5B FFN width; 11 tokens = two passes
    cases.push_back({t, 9, 2080, 8});    // 65 blocks: the last one unpaired
    cases.push_back({t, 19, 4864, 1});   // one token, 152 units a row: split over 2 warps
    cases.push_back({t, 7, 9248, 1});    // 289 units: split over 2 warps, one unit left over
    cases.push_back({t, 3, 768, 1});     // one token, 24 units: two row pairs a warp, the last row absent
    cases.push_back({t, 9, 2080, 1});    // one token, 65 units: a second round of one unit
  }
  for (TensorType t : {TensorType::Q4_K, TensorType::Q5_K, TensorType::Q6_K}) {
    cases.push_back({t, 37, 1536, 1});
    cases.push_back({t, 129, 3584, 8});
    cases.push_back({t, 33, 5120, 3});
    cases.push_back({t, 17, 18944, 2});  // 7B FFN down
    cases.push_back({t, 21, 4864, 7});   // 19 blocks a row: rows 2-byte aligned for Q6_K
    cases.push_back({t, 19, 18944, 1});  // one token, 296 units a row: split over 2 warps
    cases.push_back({t, 11, 9472, 1});   // 148 units: split over 2 warps, the last round partial
    cases.push_back({t, 5, 2048, 1});    // one token, 32 units: two row pairs a warp, the last pair half
    cases.push_back({t, 21, 4864, 1});   // one token, 76 units (0.5B FFN down): the second round partial
  }
  // Enough rows for two rows per warp; the odd count leaves the last warp one row short.
  for (TensorType t : {TensorType::Q4_0, TensorType::Q4_1, TensorType::Q5_0, TensorType::Q8_0,
                       TensorType::Q4_K, TensorType::Q5_K, TensorType::Q6_K}) {
    cases.push_back({t, 8193, 1536, 1});
    cases.push_back({t, 8193, 1536, 4});
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Types, CudaMatvec, ::testing::ValuesIn(matvec_cases()),
                         [](const auto& info) {
                           const MatvecCase& c = info.param;
                           return std::string(tensor_type_name(c.type)) + "_" +
                                  std::to_string(c.rows) + "x" + std::to_string(c.cols) + "_t" +
                                  std::to_string(c.tokens);
                         });

class CudaMatvecParts : public ::testing::TestWithParam<TensorType> {};

// Three matrices of one launch (Q, K and V shapes: rows not multiples of the CTA's rows, so
// part boundaries fall inside CTAs' ranges of the grid) against each matrix's float64 product;
// 9 tokens take two passes; one token of 18,432 columns splits each row over 2 warps.
TEST_P(CudaMatvecParts, EachPartMatchesItsFloat64Product) {
  SKIP_WITHOUT_GPU();
  const TensorType type = GetParam();
  std::mt19937_64 rng(17);
  for (const auto& [tokens, cols] : {std::pair<int64_t, int64_t>{1, 1536}, {9, 1536}, {1, 18432}}) {
    for (const int count : {2, 3}) {
      std::vector<QuantMatrix> w;
      for (const int64_t rows : {37, 6, 13}) w.emplace_back(type, rows, cols, rng);
      const std::vector<float> x = random_floats(static_cast<size_t>(tokens * cols), rng);
      const HostQ8 xq = quantize_q8_on_host(x);
      const DeviceVector<float> dx(x);
      const DeviceVector<int8_t> q(x.size());
      const DeviceVector<float> ds(x.size() / 16);
      cuda::quantize_activations(dx.get(), cols, tokens, {q.get(), ds.get()}, nullptr);
      std::vector<std::unique_ptr<DeviceVector<uint8_t>>> dw;
      std::vector<std::unique_ptr<DeviceVector<float>>> dbias, dy;
      std::vector<std::vector<float>> bias;
      std::vector<cuda::MatvecPart> parts;
      for (int i = 0; i < count; ++i) {
        bias.push_back(random_floats(static_cast<size_t>(w[i].rows), rng));
        dw.push_back(std::make_unique<DeviceVector<uint8_t>>(w[i].bytes));
        dbias.push_back(std::make_unique<DeviceVector<float>>(bias[i]));
        dy.push_back(std::make_unique<DeviceVector<float>>(static_cast<size_t>(tokens * w[i].rows)));
        parts.push_back({w[i].on_device(*dw[i]), dy[i]->get(), w[i].rows, i == 1 ? nullptr : dbias[i]->get()});
      }
      cuda::matvec_int8_parts(parts.data(), count, {q.get(), ds.get()}, false, tokens, nullptr);
      for (int i = 0; i < count; ++i) {
        std::vector<double> ref(static_cast<size_t>(tokens * w[i].rows));
        for (int64_t t = 0; t < tokens; ++t) {
          for (int64_t r = 0; r < w[i].rows; ++r) {
            double sum = i == 1 ? 0.0 : bias[i][r];
            for (int64_t k = 0; k < cols; ++k) {
              sum += static_cast<double>(w[i].values[r * cols + k]) * xq.values[t * cols + k];
            }
            ref[t * w[i].rows + r] = sum;
          }
        }
        EXPECT_LE(relative_max_error(dy[i]->read(), ref), 1e-5)
            << "part " << i << " of " << count << ", " << tokens << " tokens";
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Types, CudaMatvecParts,
                         ::testing::Values(TensorType::Q4_K, TensorType::Q6_K, TensorType::Q8_0,
                                           TensorType::Q5_0),
                         [](const auto& info) { return std::string(tensor_type_name(info.param)); });

class CudaDequantize : public ::testing::TestWithParam<TensorType> {};

TEST_P(CudaDequantize, EmbeddingRowsAndHalfTilesMatchTheScalarDequantizer) {
  SKIP_WITHOUT_GPU();
  std::mt19937_64 rng(99);
  const int64_t cols = GetParam() == TensorType::Q4_K || GetParam() == TensorType::Q5_K ||
                               GetParam() == TensorType::Q6_K
                           ? 1024
                           : 896;
  const QuantMatrix w(GetParam(), 23, cols, rng);
  const DeviceVector<uint8_t> dw(w.bytes);

  const std::vector<int32_t> tokens = {5, 0, 22, 5, 17};
  const DeviceVector<int32_t> dt(tokens);
  const DeviceVector<float> embedded(tokens.size() * static_cast<size_t>(cols));
  cuda::embed_rows(w.on_device(dw), dt.get(), static_cast<int64_t>(tokens.size()), embedded.get(),
                   nullptr);
  const std::vector<float> e = embedded.read();
  for (size_t t = 0; t < tokens.size(); ++t) {
    for (int64_t k = 0; k < cols; ++k) {
      const float expected = w.values[tokens[t] * cols + k];
      // The kernel may fuse d * q - m into one FMA: one rounding fewer than the scalar code.
      ASSERT_NEAR(e[t * cols + k], expected, 1e-6f * (1.0f + std::abs(expected)))
          << "token " << t << " column " << k;
    }
  }

  const int64_t row_begin = 3, row_count = 11;
  const DeviceVector<uint16_t> halves(static_cast<size_t>(row_count * cols));
  cuda::dequantize_to_half(w.on_device(dw), row_begin, row_count, halves.get(), nullptr);
  const std::vector<uint16_t> h = halves.read();
  for (int64_t r = 0; r < row_count; ++r) {
    for (int64_t k = 0; k < cols; ++k) {
      const float expected = w.values[(row_begin + r) * cols + k];
      ASSERT_NEAR(fp16_to_fp32(h[r * cols + k]), expected, 1e-3f * std::abs(expected) + 1e-7f)
          << "row " << r << " column " << k;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Types, CudaDequantize,
                         ::testing::Values(TensorType::F32, TensorType::F16, TensorType::BF16,
                                           TensorType::Q4_0, TensorType::Q4_1, TensorType::Q5_0, TensorType::Q8_0,
                                           TensorType::Q4_K, TensorType::Q5_K, TensorType::Q6_K),
                         [](const auto& info) { return std::string(tensor_type_name(info.param)); });

TEST(CudaKernels, RmsNormAndLayerNormMatchFloat64) {
  SKIP_WITHOUT_GPU();
  std::mt19937_64 rng(5);
  for (const bool layer_norm : {false, true}) {
    for (const int64_t width : {896, 5120, 1000, 1001, 16384}) {
      const int64_t tokens = 3;
      const std::vector<float> x = random_floats(static_cast<size_t>(tokens * width), rng, 4.0f);
      const std::vector<float> weight = random_floats(static_cast<size_t>(width), rng);
      const std::vector<float> bias = random_floats(static_cast<size_t>(width), rng);
      std::vector<double> ref(x.size());
      for (int64_t t = 0; t < tokens; ++t) {
        const float* xt = x.data() + t * width;
        double mean = 0.0, var = 0.0;
        if (layer_norm) mean = std::accumulate(xt, xt + width, 0.0) / static_cast<double>(width);
        for (int64_t i = 0; i < width; ++i) var += (xt[i] - mean) * (xt[i] - mean);
        const double scale = 1.0 / std::sqrt(var / static_cast<double>(width) + 1e-6);
        for (int64_t i = 0; i < width; ++i) {
          ref[t * width + i] = (xt[i] - mean) * scale * weight[i] + (layer_norm ? bias[i] : 0.0);
        }
      }
      const DeviceVector<float> dx(x), dw(weight), db(bias), out(x.size());
      // Widths of whole 32-value blocks also write the int8 blocks of the output; every width
      // its float16 copy.
      const bool quantize = width % 32 == 0;
      const DeviceVector<int8_t> q(x.size());
      const DeviceVector<float> ds(x.size() / 16);
      const DeviceVector<uint16_t> half(x.size());
      cuda::norm_rows(dx.get(), dw.get(), layer_norm ? db.get() : nullptr, out.get(), width, tokens,
                      1e-6f, layer_norm,
                      {quantize ? cuda::ActivationsQ8{q.get(), ds.get()} : cuda::ActivationsQ8{}, half.get()},
                      nullptr);
      const std::vector<float> result = out.read();
      EXPECT_LE(relative_max_error(result, ref), 1e-5) << "layer_norm " << layer_norm << " width " << width;
      if (quantize) expect_q8_of(result, q, ds);
      expect_half_of(result, half);
    }
  }
}

struct RopeCase {
  int heads, kv_heads, head_dim, rope_dim;
  bool neox;
};

class CudaRope : public ::testing::TestWithParam<RopeCase> {};

// With the biases of Q, K and V added first (Qwen2's), and without biases.
TEST_P(CudaRope, RotatesQueriesAndStoresRotatedKeysAndValuesAtTheirSlots) {
  SKIP_WITHOUT_GPU();
  const RopeCase c = GetParam();
  std::mt19937_64 rng(static_cast<uint64_t>(c.head_dim * 10 + c.rope_dim));
  const int tokens = 4, q_dim = c.heads * c.head_dim, kv_dim = c.kv_heads * c.head_dim;
  const std::vector<int32_t> positions = {0, 1, 777, 31999};
  const std::vector<int32_t> slots = {9, 2, 30, 0};
  const int slot_count = 32;
  const std::vector<float> q = random_floats(static_cast<size_t>(tokens * q_dim), rng);
  const std::vector<float> k = random_floats(static_cast<size_t>(tokens * kv_dim), rng);
  const std::vector<float> v = random_floats(static_cast<size_t>(tokens * kv_dim), rng);
  const std::vector<float> bq = random_floats(static_cast<size_t>(q_dim), rng);
  const std::vector<float> bk = random_floats(static_cast<size_t>(kv_dim), rng);
  const std::vector<float> bv = random_floats(static_cast<size_t>(kv_dim), rng);
  const double base = 1e6;
  std::vector<double> inv_freq(static_cast<size_t>(c.rope_dim / 2));
  for (size_t i = 0; i < inv_freq.size(); ++i) inv_freq[i] = std::pow(base, -2.0 * i / c.rope_dim);

  // src + bias (float32 sums, as the kernel and the products make them), then rotated in float64.
  auto rotate = [&](const std::vector<float>& src, const std::vector<float>* bias, int heads) {
    const int dim = heads * c.head_dim, half = c.rope_dim / 2;
    std::vector<double> out(src.begin(), src.end());
    if (bias != nullptr) {
      for (size_t i = 0; i < src.size(); ++i) out[i] = src[i] + (*bias)[i % static_cast<size_t>(dim)];
    }
    for (int t = 0; t < tokens; ++t) {
      for (int h = 0; h < heads; ++h) {
        for (int i = 0; i < half; ++i) {
          const double theta = positions[t] * inv_freq[i];
          const int a = c.neox ? i : 2 * i, b = c.neox ? i + half : 2 * i + 1;
          double* head = out.data() + t * dim + h * c.head_dim;
          const double x0 = head[a], x1 = head[b];
          head[a] = x0 * std::cos(theta) - x1 * std::sin(theta);
          head[b] = x0 * std::sin(theta) + x1 * std::cos(theta);
        }
      }
    }
    return out;
  };
  const DeviceVector<double> dfreq(inv_freq);
  const DeviceVector<int32_t> dpos(positions), dslots(slots);
  const DeviceVector<float> dbq(bq), dbk(bk), dbv(bv);
  const cuda::RopeParams p{c.heads, c.kv_heads, c.head_dim, c.rope_dim, c.neox, dfreq.get()};
  for (const bool with_bias : {true, false}) {
    const std::vector<double> q_ref = rotate(q, with_bias ? &bq : nullptr, c.heads);
    const std::vector<double> k_ref = rotate(k, with_bias ? &bk : nullptr, c.kv_heads);
    const DeviceVector<float> dq(q), dk(k), dv(v);
    const DeviceVector<uint16_t> kc(static_cast<size_t>(slot_count * kv_dim)),
        vc(static_cast<size_t>(slot_count * kv_dim));
    const cuda::QkvBias bias = with_bias ? cuda::QkvBias{dbq.get(), dbk.get(), dbv.get()} : cuda::QkvBias{};
    cuda::rope_and_store_kv(p, bias, dq.get(), dk.get(), dv.get(), dpos.get(), dslots.get(), tokens, kc.get(),
                            vc.get(), nullptr);
    EXPECT_LE(relative_max_error(dq.read(), q_ref), 1e-6) << "bias " << with_bias;
    const std::vector<uint16_t> keys = kc.read(), values = vc.read();
    for (int t = 0; t < tokens; ++t) {
      for (int i = 0; i < kv_dim; ++i) {
        const size_t at = static_cast<size_t>(slots[t] * kv_dim + i);
        const double expected = k_ref[t * kv_dim + i];  // rounded once more to float16
        ASSERT_NEAR(fp16_to_fp32(keys[at]), expected, 1e-3 * std::abs(expected) + 1e-6)
            << "bias " << with_bias << " token " << t << " dim " << i;
        const float value = v[t * kv_dim + i] + (with_bias ? bv[i] : 0.0f);
        ASSERT_EQ(values[at], fp32_to_fp16(value)) << "bias " << with_bias << " token " << t << " dim " << i;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Styles, CudaRope,
                         ::testing::Values(RopeCase{14, 2, 64, 64, true},     // Qwen2.5-0.5B
                                           RopeCase{28, 4, 128, 128, true},   // Qwen2.5-7B
                                           RopeCase{32, 4, 64, 64, false},    // TinyLlama
                                           RopeCase{32, 32, 80, 32, true}));  // phi-2, partial

// Q, K and V with PartOutput's RoPE and KV cache write (and their biases) in the product's
// epilogue against the plain product without biases followed by rope_and_store_kv with them, as
// the backend's other steps run: the same bits in q, the key cache and the value cache. Q and K share a launch (Q4_K), V has another type and its own (Q6_K, as in Q4_K_M
// files); 9 tokens take two passes.
TEST_P(CudaRope, InTheQkvProductGivesTheBitsOfTheProductThenRopeAndStoreKv) {
  SKIP_WITHOUT_GPU();
  const RopeCase c = GetParam();
  std::mt19937_64 rng(static_cast<uint64_t>(c.head_dim * 7 + c.rope_dim));
  const int64_t cols = 512, q_dim = c.heads * c.head_dim, kv_dim = c.kv_heads * c.head_dim;
  const QuantMatrix wq(TensorType::Q4_K, q_dim, cols, rng), wk(TensorType::Q4_K, kv_dim, cols, rng),
      wv(TensorType::Q6_K, kv_dim, cols, rng);
  const DeviceVector<uint8_t> dwq(wq.bytes), dwk(wk.bytes), dwv(wv.bytes);
  const DeviceVector<float> bq(random_floats(static_cast<size_t>(q_dim), rng)),
      bk(random_floats(static_cast<size_t>(kv_dim), rng)), bv(random_floats(static_cast<size_t>(kv_dim), rng));
  std::vector<double> inv_freq(static_cast<size_t>(c.rope_dim / 2));
  for (size_t i = 0; i < inv_freq.size(); ++i) inv_freq[i] = std::pow(1e6, -2.0 * i / c.rope_dim);
  const DeviceVector<double> dfreq(inv_freq);
  const cuda::RopeParams p{c.heads, c.kv_heads, c.head_dim, c.rope_dim, c.neox, dfreq.get()};
  const int slot_count = 40;
  for (const int tokens : {1, 3, 9}) {
    std::vector<int32_t> positions, slots;
    for (int t = 0; t < tokens; ++t) {
      positions.push_back(t == 0 ? 0 : 37 * t * t + 5);
      slots.push_back((7 * t + 3) % slot_count);
    }
    const std::vector<float> x = random_floats(static_cast<size_t>(tokens * cols), rng);
    const DeviceVector<float> dx(x);
    const DeviceVector<int8_t> xq(x.size());
    const DeviceVector<float> xds(x.size() / 16);
    cuda::quantize_activations(dx.get(), cols, tokens, {xq.get(), xds.get()}, nullptr);
    const DeviceVector<int32_t> dpos(positions), dslots(slots);
    const auto cache = [&] { return std::make_unique<DeviceVector<uint16_t>>(static_cast<size_t>(slot_count * kv_dim)); };
    const auto keys_ref = cache(), values_ref = cache(), keys = cache(), values = cache();
    const DeviceVector<float> q_ref(static_cast<size_t>(tokens * q_dim)), k(static_cast<size_t>(tokens * kv_dim)),
        v(static_cast<size_t>(tokens * kv_dim)), q(static_cast<size_t>(tokens * q_dim));
    const cuda::ActivationsQ8 a{xq.get(), xds.get()};
    const cuda::MatvecPart plain[] = {{wq.on_device(dwq), q_ref.get(), q_dim, nullptr},
                                      {wk.on_device(dwk), k.get(), kv_dim, nullptr}};
    const cuda::MatvecPart plain_v{wv.on_device(dwv), v.get(), kv_dim, nullptr};
    cuda::matvec_int8_parts(plain, 2, a, false, tokens, nullptr);
    cuda::matvec_int8_parts(&plain_v, 1, a, false, tokens, nullptr);
    cuda::rope_and_store_kv(p, {bq.get(), bk.get(), bv.get()}, q_ref.get(), k.get(), v.get(), dpos.get(),
                            dslots.get(), tokens, keys_ref->get(), values_ref->get(), nullptr);

    const cuda::KvWrite kv{p, dpos.get(), dslots.get(), keys->get(), values->get()};
    const cuda::MatvecPart roped[] = {
        {wq.on_device(dwq), q.get(), q_dim, bq.get(), cuda::PartOutput::RopedQuery},
        {wk.on_device(dwk), nullptr, 0, bk.get(), cuda::PartOutput::RopedKeyToCache}};
    const cuda::MatvecPart cached_v{wv.on_device(dwv), nullptr, 0, bv.get(), cuda::PartOutput::ValueToCache};
    cuda::matvec_int8_parts(roped, 2, a, false, tokens, nullptr, &kv);
    cuda::matvec_int8_parts(&cached_v, 1, a, false, tokens, nullptr, &kv);
    EXPECT_EQ(q.read(), q_ref.read()) << tokens << " tokens";
    // Slots no token writes stay as both were made (poisoned).
    EXPECT_EQ(keys->read(), keys_ref->read()) << tokens << " tokens";
    EXPECT_EQ(values->read(), values_ref->read()) << tokens << " tokens";
  }
}

TEST(CudaKernels, RopedPartsWithoutKvWriteOrOfWrongRowsAreRefused) {
  SKIP_WITHOUT_GPU();
  std::mt19937_64 rng(3);
  const QuantMatrix w(TensorType::Q4_K, 128, 256, rng);
  const DeviceVector<uint8_t> dw(w.bytes);
  const DeviceVector<int8_t> xq(256);
  const DeviceVector<float> xds(16), y(128);
  const DeviceVector<int32_t> positions(std::vector<int32_t>{0}), slots(std::vector<int32_t>{0});
  const DeviceVector<uint16_t> cache(128);
  const cuda::MatvecPart part{w.on_device(dw), y.get(), 128, nullptr, cuda::PartOutput::RopedQuery};
  EXPECT_THROW(cuda::matvec_int8_parts(&part, 1, {xq.get(), xds.get()}, false, 1, nullptr), Error);
  // 128 rows are not 3 heads of 64.
  const cuda::KvWrite kv{{3, 1, 64, 64, true, nullptr}, positions.get(), slots.get(), cache.get(), cache.get()};
  EXPECT_THROW(cuda::matvec_int8_parts(&part, 1, {xq.get(), xds.get()}, false, 1, nullptr, &kv), Error);
  EXPECT_THROW(cuda::matmul_dequant_mma_parts(&part, 1, cache.get(), false, 16, nullptr), Error);
}

TEST(CudaKernels, SwiGluAndGeluMatchFloat64) {
  SKIP_WITHOUT_GPU();
  std::mt19937_64 rng(3);
  const size_t n = 10007;
  const std::vector<float> gate = random_floats(n, rng, 8.0f), up = random_floats(n, rng, 8.0f);
  std::vector<double> swiglu_ref(n), gelu_ref(n);
  for (size_t i = 0; i < n; ++i) {
    swiglu_ref[i] = gate[i] / (1.0 + std::exp(-static_cast<double>(gate[i]))) * up[i];
    const double x = up[i];
    gelu_ref[i] = 0.5 * x * (1.0 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
  }
  const DeviceVector<float> dg(gate), du(up), dx(up), du_q(up);
  cuda::swiglu(dg.get(), du.get(), static_cast<int64_t>(n), {}, nullptr);
  cuda::gelu(dx.get(), static_cast<int64_t>(n), nullptr);
  EXPECT_LE(relative_max_error(du.read(), swiglu_ref), 1e-6);
  EXPECT_LE(relative_max_error(dx.read(), gelu_ref), 1e-6);
  // With int8 blocks: the first n_q values (whole blocks); the rest of up stays as it was.
  const size_t n_q = n / 32 * 32;
  const DeviceVector<int8_t> q(n_q);
  const DeviceVector<float> ds(n_q / 16);
  const DeviceVector<uint16_t> half(n_q);
  cuda::swiglu(dg.get(), du_q.get(), static_cast<int64_t>(n_q), {{q.get(), ds.get()}, half.get()}, nullptr);
  std::vector<float> result = du_q.read();
  EXPECT_EQ(result[n_q], up[n_q]);
  result.resize(n_q);
  EXPECT_LE(relative_max_error(result, std::vector<double>(swiglu_ref.begin(), swiglu_ref.begin() + n_q)), 1e-6);
  expect_q8_of(result, q, ds);
  expect_half_of(result, half);
}

// argmax_rows against greedy_token (the host's greedy choice) on random rows of odd lengths with
// planted ties, and its codes for a row with a NaN and a row of -inf.
TEST(CudaKernels, ArgmaxRowsPicksTheHostsGreedyToken) {
  SKIP_WITHOUT_GPU();
  std::mt19937_64 rng(5);
  for (const int64_t vocab : {1, 31, 1000, 151936 + 5}) {
    const int64_t rows = 7;
    std::vector<float> logits = random_floats(static_cast<size_t>(rows * vocab), rng, 10.0f);
    for (int64_t r = 0; r < rows; ++r) {
      float* row = logits.data() + r * vocab;
      const float top = *std::max_element(row, row + vocab);
      if (r % 2 == 0) row[(r * 7919) % vocab] = top;  // a tie with the largest logit
      if (r == 3) row[vocab - 1] = top + 1.0f;        // the largest at the end
    }
    std::vector<int32_t> want(static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r) {
      want[static_cast<size_t>(r)] = greedy_token(std::span<const float>(logits).subspan(r * vocab, vocab));
    }
    if (vocab > 1) {  // row 5 holds a NaN, row 6 only -inf
      std::fill(logits.begin() + 6 * vocab, logits.begin() + 7 * vocab, -INFINITY);
      logits[static_cast<size_t>(5 * vocab + vocab / 2)] = NAN;
      want[5] = cuda::kArgmaxNaN;
      want[6] = cuda::kArgmaxAllNegativeInfinity;
    }
    const DeviceVector<float> d(logits);
    const DeviceVector<int32_t> out(static_cast<size_t>(rows));
    cuda::argmax_rows(d.get(), rows, vocab, out.get(), nullptr);
    EXPECT_EQ(out.read(), want) << "vocab " << vocab;
  }
}

#endif  // REALIZAR_HAVE_CUDA

}  // namespace
}  // namespace realizar
