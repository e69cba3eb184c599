// matmul_dequant_mma (tensor-core float16 matrix product on quantized weights, meant for 9-64
// tokens) against a float64 dot product of the dequantized weights (the scalar dequantizer) with
// the float16-rounded activations, so that the only difference is the kernel's float16 weights and
// float32 summation; at the Qwen2.5 shapes, odd sizes (rows not a multiple of a tile, token counts
// around the tiles of 32 tokens, rows of every type's block multiples), with bias and accumulate,
// one matrix or several parts in one launch; a few counts above 64 (several token tiles, which the
// kernel still computes though the backend sends them to cuBLAS). Each case runs the launch shape
// matmul_dequant_mma picks and several others (warps of 16 or 32 rows, K split over 1 to 8 CTAs of
// a cluster). Skips without a GPU.
//
// With REALIZAR_CUDA_BENCH=1, CudaMmaBench.Crossover times the backend's choice, the other launch
// shapes and the dequantize + cuBLAS path side by side at the Qwen2.5 0.5B/1.5B/7B/32B shapes for
// 32 and 64 tokens, and the cuBLAS path alone at 96 and 128 (docs/perf-notes.md, "Steps of
// 65-512 tokens").
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "realizar/error.h"
#include "realizar/quant.h"
#include "realizar/tensor_type.h"

#ifdef REALIZAR_HAVE_CUDA
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "backend/cuda/kernels.h"
#include "gpu/cuda_test_support.h"
#endif

namespace realizar {
namespace {

#ifndef REALIZAR_HAVE_CUDA
TEST(CudaMma, SkippedWithoutCuda) { GTEST_SKIP() << "built without the CUDA backend"; }
#else

using testing::DeviceVector;
using testing::random_floats;

// A quantized matrix of random rows. The 7B shapes would take the host quantizer seconds, so
// `distinct` random rows are repeated (61: no power-of-two stride maps a row onto an equal one).
struct QuantMatrix {
  TensorType type;
  int64_t rows, cols, distinct;
  size_t row_bytes;
  std::vector<uint8_t> bytes;
  std::vector<float> values;  // [distinct x cols], dequantized

  QuantMatrix(TensorType t, int64_t r, int64_t c, std::mt19937_64& rng)
      : type(t), rows(r), cols(c), distinct(std::min<int64_t>(r, 61)),
        row_bytes(static_cast<size_t>(::realizar::row_bytes(t, static_cast<uint64_t>(c)))) {
    bytes.resize(row_bytes * static_cast<size_t>(rows));
    values.resize(static_cast<size_t>(distinct * cols));
    for (int64_t i = 0; i < distinct; ++i) {
      const std::vector<float> src = random_floats(static_cast<size_t>(cols), rng);
      quantize_row(type, src.data(), bytes.data() + i * row_bytes, cols);
      dequantize_row(type, bytes.data() + i * row_bytes, values.data() + i * cols, cols);
    }
    for (int64_t i = distinct; i < rows; ++i) {
      std::copy_n(bytes.begin() + static_cast<std::ptrdiff_t>((i % distinct) * row_bytes), row_bytes,
                  bytes.begin() + static_cast<std::ptrdiff_t>(i * row_bytes));
    }
  }
  const float* row(int64_t r) const { return values.data() + (r % distinct) * cols; }
  cuda::DeviceMatrix on_device(const uint8_t* data) const {
    return {static_cast<uint32_t>(type), rows, cols, row_bytes, data};
  }
};

// Random activations in float16 (converted on the device, as the backend does), and their values
// in float64.
struct Activations {
  DeviceVector<uint16_t> half;
  std::vector<double> values;  // [tokens x cols]

  Activations(int64_t tokens, int64_t cols, std::mt19937_64& rng) : half(static_cast<size_t>(tokens * cols)) {
    const std::vector<float> x = random_floats(static_cast<size_t>(tokens * cols), rng);
    const DeviceVector<float> dx(x);
    cuda::float_to_half(dx.get(), half.get(), tokens * cols, nullptr);
    const std::vector<uint16_t> bits = half.read();
    std::vector<float> rounded(bits.size());
    dequantize_row(TensorType::F16, reinterpret_cast<const uint8_t*>(bits.data()), rounded.data(),
                   static_cast<int64_t>(bits.size()));
    values.assign(rounded.begin(), rounded.end());
  }
  const void* device() const { return half.get(); }
};

// The rows the reference checks: all of a small matrix; of a large one the first and last 40 and
// every 23rd (every CTA position, every lane's rows, the ragged last tile).
std::vector<int64_t> checked_rows(int64_t rows) {
  std::vector<int64_t> out;
  for (int64_t r = 0; r < rows; ++r) {
    if (rows <= 512 || r < 40 || r >= rows - 40 || r % 23 == 0) out.push_back(r);
  }
  return out;
}

// Each weight becomes the float16 scale * q + offset of its block (scale and offset themselves
// rounded to float16: up to three roundings of 2^-11 relative), so product term k is off by at
// most ~1.5e-3 |w_k x_k|, with random signs: an entry's error is a few 1e-4 of the root sum of
// squares of its terms, sqrt(sum_k (w_k x_k)^2), and the bound below leaves room for the largest of
// many entries. A wrong scale or element order in one 32-element block of a 3584-long row moves
// an entry by ~sqrt(32 / 3584) = 0.09 of that measure.
constexpr double kTolerance = 1e-2;

// The float64 products W x at the checked rows of one matrix, and the root sum of squares of their
// terms (the scale of their rounding error).
struct Reference {
  std::vector<int64_t> rows;
  std::vector<double> dot, terms;  // [checked row][token]
  int64_t tokens;

  Reference(const QuantMatrix& w, const Activations& x, int64_t n) : rows(checked_rows(w.rows)), tokens(n) {
    dot.resize(rows.size() * static_cast<size_t>(tokens));
    terms.resize(dot.size());
    for (size_t i = 0; i < rows.size(); ++i) {
      const float* wr = w.row(rows[i]);
      for (int64_t t = 0; t < tokens; ++t) {
        const double* xt = x.values.data() + t * w.cols;
        double sum = 0.0, squares = 0.0;
        for (int64_t k = 0; k < w.cols; ++k) {
          const double term = static_cast<double>(wr[k]) * xt[k];
          sum += term;
          squares += term * term;
        }
        dot[i * tokens + t] = sum;
        terms[i * tokens + t] = std::sqrt(squares);
      }
    }
  }

  // The largest error of the checked entries of y ([tokens x ldy]) against base + times * W x +
  // bias, each relative to times * the scale of its terms; infinity for a NaN.
  double max_error(const std::vector<float>& y, int64_t ldy, double times, const std::vector<float>* bias,
                   const std::vector<float>* base) const {
    double worst = 0.0;
    for (size_t i = 0; i < rows.size(); ++i) {
      const int64_t r = rows[i];
      for (int64_t t = 0; t < tokens; ++t) {
        const double want = times * dot[i * tokens + t] + (bias != nullptr ? (*bias)[r] : 0.0) +
                            (base != nullptr ? (*base)[t * ldy + r] : 0.0);
        const float got = y[t * ldy + r];
        if (std::isnan(got)) return std::numeric_limits<double>::infinity();
        worst = std::max(worst, std::abs(got - want) / (times * terms[i * tokens + t]));
      }
    }
    return worst;
  }
};

std::string shape_name(const cuda::MmaShape& s) {
  return "warp_rows " + std::to_string(s.warp_rows) + ", splits " + std::to_string(s.splits);
}

// The launch shapes a case runs: the chosen one and others of both warp heights, with K whole or
// split (a split past the row's units leaves CTAs with none, which must still add nothing wrong).
std::vector<cuda::MmaShape> shapes_for(int64_t rows, int64_t cols, int64_t tokens) {
  std::vector<cuda::MmaShape> shapes = {cuda::matmul_dequant_mma_shape(rows, cols, tokens)};
  const std::vector<cuda::MmaShape> others = {{32, 1}, {16, 1}, {32, 3}, {16, 8}, {32, 8}};
  shapes.insert(shapes.end(), others.begin(), others.end());
  return shapes;
}

struct MmaCase {
  TensorType type;
  int64_t rows, cols, tokens;
};

std::string case_name(const MmaCase& c) {
  return std::string(tensor_type_name(c.type)) + "_" + std::to_string(c.rows) + "x" +
         std::to_string(c.cols) + "_t" + std::to_string(c.tokens);
}

class CudaMma : public ::testing::TestWithParam<MmaCase> {};

// y = W x + bias with accumulate = false, then y += W x (accumulate = true, no bias) over the
// first result, for each launch shape.
TEST_P(CudaMma, MatchesFloat64ProductOfDequantizedWeightsAndActivations) {
  SKIP_WITHOUT_GPU();
  const MmaCase c = GetParam();
  ASSERT_TRUE(cuda::matvec_reads_int8(static_cast<uint32_t>(c.type)));
  std::mt19937_64 rng(static_cast<uint64_t>(c.rows * 131 + c.cols * 7 + c.tokens));
  const QuantMatrix w(c.type, c.rows, c.cols, rng);
  const Activations x(c.tokens, c.cols, rng);
  const std::vector<float> bias = random_floats(static_cast<size_t>(c.rows), rng);
  const DeviceVector<uint8_t> dw(w.bytes);
  const DeviceVector<float> db(bias);
  const Reference ref(w, x, c.tokens);
  for (const cuda::MmaShape shape : shapes_for(c.rows, c.cols, c.tokens)) {
    const DeviceVector<float> y(static_cast<size_t>(c.tokens * c.rows));
    const cuda::MatvecPart with_bias{w.on_device(dw.get()), y.get(), c.rows, db.get()};
    cuda::matmul_dequant_mma_tiled(&with_bias, 1, x.device(), false, c.tokens, shape, nullptr);
    EXPECT_LE(ref.max_error(y.read(), c.rows, 1.0, &bias, nullptr), kTolerance) << shape_name(shape);
    const cuda::MatvecPart without_bias{w.on_device(dw.get()), y.get(), c.rows, nullptr};
    cuda::matmul_dequant_mma_tiled(&without_bias, 1, x.device(), true, c.tokens, shape, nullptr);
    EXPECT_LE(ref.max_error(y.read(), c.rows, 2.0, &bias, nullptr), kTolerance) << shape_name(shape) << ", accumulated";
  }
}

std::vector<MmaCase> mma_cases() {
  std::vector<MmaCase> cases;
  for (TensorType t : {TensorType::Q4_0, TensorType::Q4_1, TensorType::Q5_0, TensorType::Q8_0,
                       TensorType::Q4_K, TensorType::Q5_K, TensorType::Q6_K}) {
    for (const int64_t tokens : {9, 32, 64}) cases.push_back({t, 3584, 3584, tokens});
    cases.push_back({t, 18944, 3584, 32});
    cases.push_back({t, 37, 1536, 13});   // rows in one ragged tile, tokens in one ragged tile
    cases.push_back({t, 100, 4864, 33});  // 0.5B FFN width; a second token tile of one token
    cases.push_back({t, 1, 3584, 1});
    cases.push_back({t, 300, 1536, 57});  // 2 row tiles of 128 and 44 rows; token tiles of 32 and 25
    cases.push_back({t, 200, 4864, 50});  // 19 blocks of 256 a row
    cases.push_back({t, 300, 1536, 65});  // above 64: a third token tile of one token
    cases.push_back({t, 45, 1536, 300});  // ten token tiles, the last of 12 tokens
  }
  for (TensorType t : {TensorType::Q4_0, TensorType::Q4_1, TensorType::Q5_0, TensorType::Q8_0}) {
    cases.push_back({t, 53, 2080, 17});   // 65 blocks: the last 4-block unit holds one
    cases.push_back({t, 71, 896, 40});    // 28 blocks
    cases.push_back({t, 896, 896, 32});   // 0.5B q/o
    cases.push_back({t, 4864, 896, 64});  // 0.5B gate/up
  }
  cases.push_back({TensorType::Q6_K, 3584, 18944, 32});  // 7B FFN down
  cases.push_back({TensorType::Q6_K, 3584, 18944, 64});
  cases.push_back({TensorType::Q4_K, 3584, 18944, 64});
  cases.push_back({TensorType::Q4_K, 5120, 5120, 48});   // 32B q/o
  cases.push_back({TensorType::Q4_K, 8960, 1536, 64});   // 1.5B gate/up
  cases.push_back({TensorType::Q6_K, 1536, 8960, 64});   // 1.5B down: rows only 2-byte aligned
  cases.push_back({TensorType::Q6_K, 21, 4864, 19});     // 19 blocks a row: rows only 2-byte aligned
  cases.push_back({TensorType::Q4_K, 21, 4864, 9});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Types, CudaMma, ::testing::ValuesIn(mma_cases()),
                         [](const auto& info) { return case_name(info.param); });

// Three matrices of one type in one launch (Q, K, V; gate, up): each part with its own rows,
// output stride and bias (or none), accumulated onto random outputs, against each part's
// reference; with the chosen shape and with a split K.
struct PartsCase {
  TensorType type;
  int64_t cols, tokens;
};

class CudaMmaParts : public ::testing::TestWithParam<PartsCase> {};

TEST_P(CudaMmaParts, EachPartMatchesItsFloat64Product) {
  SKIP_WITHOUT_GPU();
  const PartsCase c = GetParam();
  std::mt19937_64 rng(static_cast<uint64_t>(c.cols * 3 + c.tokens));
  const Activations x(c.tokens, c.cols, rng);
  const int64_t part_rows[3] = {300, 64, 100};
  std::vector<QuantMatrix> w;
  std::vector<Reference> refs;
  std::vector<std::vector<float>> bias, base;
  for (int i = 0; i < 3; ++i) {
    w.emplace_back(c.type, part_rows[i], c.cols, rng);
    refs.emplace_back(w.back(), x, c.tokens);
    bias.push_back(random_floats(static_cast<size_t>(part_rows[i]), rng));
    base.push_back(random_floats(static_cast<size_t>(c.tokens * (part_rows[i] + 3)), rng));
  }
  int64_t all_rows = 0;
  for (const int64_t r : part_rows) all_rows += r;
  const std::vector<cuda::MmaShape> shapes = {cuda::matmul_dequant_mma_shape(all_rows, c.cols, c.tokens),
                                              {16, 3}, {32, 2}};
  for (const cuda::MmaShape shape : shapes) {
    std::vector<std::unique_ptr<DeviceVector<uint8_t>>> dw;
    std::vector<std::unique_ptr<DeviceVector<float>>> dy, db;
    cuda::MatvecPart parts[3];
    for (int i = 0; i < 3; ++i) {
      dw.push_back(std::make_unique<DeviceVector<uint8_t>>(w[i].bytes));
      dy.push_back(std::make_unique<DeviceVector<float>>(base[i]));
      db.push_back(std::make_unique<DeviceVector<float>>(bias[i]));
      parts[i] = {w[i].on_device(dw[i]->get()), dy[i]->get(), part_rows[i] + 3, i == 1 ? nullptr : db[i]->get()};
    }
    cuda::matmul_dequant_mma_tiled(parts, 3, x.device(), true, c.tokens, shape, nullptr);
    for (int i = 0; i < 3; ++i) {
      const std::vector<float> y = dy[i]->read();
      EXPECT_LE(refs[i].max_error(y, part_rows[i] + 3, 1.0, i == 1 ? nullptr : &bias[i], &base[i]), kTolerance)
          << "part " << i << ", " << shape_name(shape);
      // The padding columns of each output row are left as they were.
      for (int64_t t = 0; t < c.tokens; ++t) {
        for (int64_t r = part_rows[i]; r < part_rows[i] + 3; ++r) {
          ASSERT_EQ(y[t * (part_rows[i] + 3) + r], base[i][t * (part_rows[i] + 3) + r]) << "part " << i;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Types, CudaMmaParts,
                         ::testing::Values(PartsCase{TensorType::Q4_K, 1536, 40}, PartsCase{TensorType::Q4_K, 1536, 64},
                                           PartsCase{TensorType::Q6_K, 2560, 33}, PartsCase{TensorType::Q5_0, 896, 9},
                                           PartsCase{TensorType::Q8_0, 896, 64}),
                         [](const auto& info) {
                           return std::string(tensor_type_name(info.param.type)) + "_" +
                                  std::to_string(info.param.cols) + "_t" + std::to_string(info.param.tokens);
                         });

// What the launcher has no kernel for is refused (realizar::Error naming it), not skipped: a float
// weight type, parts of two types or widths, a launch shape outside the list, a part count of 0 or
// 4, a token count below 1.
TEST(CudaMma, RefusesWhatItHasNoKernelFor) {
  SKIP_WITHOUT_GPU();
  using ::testing::HasSubstr;
  using ::testing::ThrowsMessage;
  std::mt19937_64 rng(3);
  const Activations x(9, 256, rng);
  const DeviceVector<float> y(9 * 4);
  const DeviceVector<uint8_t> dw(std::vector<uint8_t>(4 * 256 * 4));
  const void* xd = x.device();
  const cuda::DeviceMatrix f32{static_cast<uint32_t>(TensorType::F32), 4, 256, 256 * 4, dw.get()};
  EXPECT_THAT([&] { cuda::matmul_dequant_mma(f32, xd, y.get(), 4, nullptr, false, 9, nullptr); },
              ThrowsMessage<Error>(HasSubstr("matmul_dequant_mma: no kernel for weight type 0")));
  const cuda::DeviceMatrix q4k{static_cast<uint32_t>(TensorType::Q4_K), 4, 256, 144, dw.get()};
  const cuda::DeviceMatrix q6k{static_cast<uint32_t>(TensorType::Q6_K), 4, 256, 210, dw.get()};
  const cuda::DeviceMatrix q4k_wide{static_cast<uint32_t>(TensorType::Q4_K), 1, 512, 288, dw.get()};
  const cuda::MatvecPart mixed[2] = {{q4k, y.get(), 4, nullptr}, {q6k, y.get(), 4, nullptr}};
  EXPECT_THAT([&] { cuda::matmul_dequant_mma_parts(mixed, 2, xd, false, 9, nullptr); },
              ThrowsMessage<Error>(HasSubstr("no kernel for mixed weight types, part 1")));
  const cuda::MatvecPart widths[2] = {{q4k, y.get(), 4, nullptr}, {q4k_wide, y.get(), 4, nullptr}};
  EXPECT_THAT([&] { cuda::matmul_dequant_mma_parts(widths, 2, xd, false, 9, nullptr); },
              ThrowsMessage<Error>(HasSubstr("no kernel for mixed widths, part 1")));
  const cuda::MatvecPart one{q4k, y.get(), 4, nullptr};
  EXPECT_THAT([&] { cuda::matmul_dequant_mma_tiled(&one, 1, xd, false, 9, {64, 1}, nullptr); },
              ThrowsMessage<Error>(HasSubstr("no kernel for warp_rows 64")));
  EXPECT_THAT([&] { cuda::matmul_dequant_mma_tiled(&one, 1, xd, false, 9, {32, 9}, nullptr); },
              ThrowsMessage<Error>(HasSubstr("no kernel for splits 9")));
  EXPECT_THAT([&] { cuda::matmul_dequant_mma_parts(&one, 0, xd, false, 9, nullptr); },
              ThrowsMessage<Error>(HasSubstr("no kernel for part count 0")));
  const cuda::MatvecPart four[4] = {one, one, one, one};
  EXPECT_THAT([&] { cuda::matmul_dequant_mma_parts(four, 4, xd, false, 9, nullptr); },
              ThrowsMessage<Error>(HasSubstr("no kernel for part count 4")));
  for (const int64_t tokens : {0, -1}) {
    EXPECT_THAT([&] { cuda::matmul_dequant_mma(q4k, xd, y.get(), 4, nullptr, false, tokens, nullptr); },
                ThrowsMessage<Error>(HasSubstr("no kernel for token count " + std::to_string(tokens))));
  }
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

// Every shape the chooser gives is one the launcher takes, and its split of K keeps the launch
// within one wave of four CTAs per multiprocessor (the rule in dequant_mma.cu).
TEST(CudaMma, ShapeChoiceSplitsKWithinOneWave) {
  SKIP_WITHOUT_GPU();
  int device = 0, sms = 0;
  ASSERT_EQ(cudaGetDevice(&device), cudaSuccess);
  ASSERT_EQ(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), cudaSuccess);
  for (const int64_t rows : {128, 896, 3584, 4608, 18944, 37888}) {
    for (const int64_t cols : {896, 1536, 3584, 18944}) {
      for (const int64_t tokens : {9, 32, 33, 64}) {
        const cuda::MmaShape s = cuda::matmul_dequant_mma_shape(rows, cols, tokens);
        const std::string where = std::to_string(rows) + "x" + std::to_string(cols) + " t" + std::to_string(tokens);
        EXPECT_TRUE(s.warp_rows == 16 || s.warp_rows == 32) << where;
        EXPECT_GE(s.splits, 1) << where;
        EXPECT_LE(s.splits, std::max<int64_t>(1, std::min<int64_t>(8, cols / 256))) << where;
        const int64_t ctas = (rows + 4 * s.warp_rows - 1) / (4 * s.warp_rows) * ((tokens + 31) / 32);
        if (s.splits > 1) {
          EXPECT_LE(ctas * s.splits, 4 * sms) << where;
        }
      }
    }
  }
}

// ---- benchmark (REALIZAR_CUDA_BENCH=1) ---------------------------------------------------------

bool env_is_one(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr && std::string_view(value) == "1";
}

// One launch of the 7B gate matrix at 32 and 64 tokens with the shape matmul_dequant_mma picks,
// outside any graph, for a profiler (REALIZAR_CUDA_PROFILE=1 ncu ... cuda_mma_test
// --gtest_filter=*ProfileOnce*).
TEST(CudaMmaBench, ProfileOnce) {
  if (!env_is_one("REALIZAR_CUDA_PROFILE")) GTEST_SKIP() << "REALIZAR_CUDA_PROFILE=1 runs it";
  SKIP_WITHOUT_GPU();
  std::mt19937_64 rng(11);
  for (const TensorType type : {TensorType::Q4_K, TensorType::Q6_K}) {
    const QuantMatrix w(type, 18944, 3584, rng);
    const DeviceVector<uint8_t> dw(w.bytes);
    const Activations x(64, 3584, rng);
    const DeviceVector<float> y(static_cast<size_t>(64 * 18944));
    for (const int64_t tokens : {32, 64}) {
      cuda::matmul_dequant_mma(w.on_device(dw.get()), x.device(), y.get(), 18944, nullptr, false, tokens, nullptr);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    }
  }
}

// The matrices one linear_parts / linear call of the backend multiplies: parts of one type and
// width (several: one tensor-core launch, or one cuBLAS GEMM each).
struct BenchCase {
  const char* name;
  TensorType type;
  int64_t cols;
  std::vector<int64_t> part_rows;
};

const std::vector<BenchCase>& bench_cases() {
  static const std::vector<BenchCase> cases = {
      {"0.5B qkv", TensorType::Q5_0, 896, {896, 128, 128}},   {"0.5B o", TensorType::Q5_0, 896, {896}},
      {"0.5B gate+up", TensorType::Q5_0, 896, {4864, 4864}},  {"0.5B down", TensorType::Q4_K, 4864, {896}},
      {"1.5B qkv", TensorType::Q4_K, 1536, {1536, 256, 256}}, {"1.5B o", TensorType::Q4_K, 1536, {1536}},
      {"1.5B gate+up", TensorType::Q4_K, 1536, {8960, 8960}}, {"1.5B down", TensorType::Q6_K, 8960, {1536}},
      {"7B qkv", TensorType::Q4_K, 3584, {3584, 512, 512}},   {"7B o", TensorType::Q4_K, 3584, {3584}},
      {"7B gate+up", TensorType::Q4_K, 3584, {18944, 18944}}, {"7B down", TensorType::Q4_K, 18944, {3584}},
      {"7B down", TensorType::Q6_K, 18944, {3584}},           {"32B qkv", TensorType::Q4_K, 5120, {5120, 1024, 1024}},
      {"32B o", TensorType::Q4_K, 5120, {5120}},              {"32B gate+up", TensorType::Q4_K, 5120, {27648, 27648}},
      {"32B down", TensorType::Q4_K, 27648, {5120}},          {"32B down", TensorType::Q6_K, 27648, {5120}},
  };
  return cases;
}

// The backend's GEMM path for one matrix (cuda_backend.cpp, linear_gemm): dequantize passes of
// whole multiples of 64 rows into a float16 scratch of kGemmScratchElements, each followed by
// cublasGemmEx (float32 accumulation) into y.
constexpr int64_t kGemmScratchElements = int64_t{64} << 20;

void gemm_path(cublasHandle_t cublas, const cuda::DeviceMatrix& w, const void* x, float* y, int64_t ldy,
               int64_t tokens, void* scratch, cudaStream_t stream) {
  const int64_t rows_per_pass = std::min(w.rows, std::max<int64_t>(64, kGemmScratchElements / w.cols / 64 * 64));
  const float alpha = 1.0f, beta = 0.0f;
  for (int64_t r0 = 0; r0 < w.rows; r0 += rows_per_pass) {
    const int64_t rows = std::min(rows_per_pass, w.rows - r0);
    cuda::dequantize_to_half(w, r0, rows, scratch, stream);
    const cublasStatus_t status =
        cublasGemmEx(cublas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(rows), static_cast<int>(tokens),
                     static_cast<int>(w.cols), &alpha, scratch, CUDA_R_16F, static_cast<int>(w.cols), x, CUDA_R_16F,
                     static_cast<int>(w.cols), &beta, y + r0, CUDA_R_32F, static_cast<int>(ldy), CUBLAS_COMPUTE_32F,
                     CUBLAS_GEMM_DEFAULT);
    EXPECT_EQ(status, CUBLAS_STATUS_SUCCESS);
  }
}

// Each case's parts at 32 and 64 tokens through (1) the backend's choice
// (matmul_dequant_mma_parts, marked *), (2) other launch shapes, (3) the dequantize + cuBLAS path,
// one GEMM per part; at 96 and 128 tokens, for the record, the cuBLAS path alone (what the backend
// runs there). Copies of the weights over 200 MB (3x L2) rotate in one CUDA graph so that each
// launch reads them from DRAM; median of 20 replays (cuda_test_support.h). The summary lines give,
// per case and token count, the choice against cuBLAS, and per weight type the largest token count
// up to which the choice beat cuBLAS at every case of that type (kMmaMaxTokens in
// cuda_backend.cpp is 64).
TEST(CudaMmaBench, Crossover) {
  if (!env_is_one("REALIZAR_CUDA_BENCH")) GTEST_SKIP() << "REALIZAR_CUDA_BENCH=1 runs it";
  SKIP_WITHOUT_GPU();
  constexpr int64_t kMmaMaxTokens = 64;  // cuda_backend.cpp
  const std::vector<int64_t> mma_token_counts = {32, kMmaMaxTokens};
  const std::vector<int64_t> token_counts = {32, kMmaMaxTokens, 96, 128};
  const int64_t max_tokens = *std::max_element(token_counts.begin(), token_counts.end());
  const std::vector<cuda::MmaShape> sweep = {{32, 1}, {32, 2}, {32, 4}, {32, 8}, {16, 1}, {16, 2}, {16, 4}, {16, 8}};
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  cublasHandle_t cublas;
  ASSERT_EQ(cublasCreate(&cublas), CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(cublasSetStream(cublas, stream), CUBLAS_STATUS_SUCCESS);
  const DeviceVector<uint8_t> workspace(size_t{32} << 20);
  ASSERT_EQ(cublasSetWorkspace(cublas, workspace.get(), size_t{32} << 20), CUBLAS_STATUS_SUCCESS);
  const DeviceVector<uint16_t> scratch(static_cast<size_t>(kGemmScratchElements));
  std::mt19937_64 rng(11);
  // Per type: the token counts at which the choice lost to cuBLAS in some case.
  std::map<std::string, std::vector<int64_t>> lost;
  std::printf("%-13s %-5s %-17s %4s %-16s %9s %8s\n", "case", "type", "rows x cols", "T", "path", "us", "TFLOP/s");
  for (const BenchCase& bc : bench_cases()) {
    const std::string type_name(tensor_type_name(bc.type));
    int64_t rows = 0;
    std::vector<QuantMatrix> mats;
    for (const int64_t r : bc.part_rows) {
      mats.emplace_back(bc.type, r, bc.cols, rng);
      rows += r;
    }
    size_t set_bytes = 0;
    for (const QuantMatrix& m : mats) set_bytes += m.bytes.size();
    const int copies = static_cast<int>(std::max<size_t>(2, (size_t{200} << 20) / set_bytes + 1));
    std::vector<uint8_t> all;
    all.reserve(set_bytes * copies);
    for (int c = 0; c < copies; ++c) {
      for (const QuantMatrix& m : mats) all.insert(all.end(), m.bytes.begin(), m.bytes.end());
    }
    const DeviceVector<uint8_t> dw(all);
    const Activations x(max_tokens, bc.cols, rng);
    std::vector<std::unique_ptr<DeviceVector<float>>> ys;
    for (const int64_t r : bc.part_rows) ys.push_back(std::make_unique<DeviceVector<float>>(static_cast<size_t>(max_tokens * r)));
    // The parts of weight copy c.
    const auto parts_of = [&](int c) {
      std::vector<cuda::MatvecPart> parts;
      size_t at = static_cast<size_t>(c) * set_bytes;
      for (size_t i = 0; i < mats.size(); ++i) {
        parts.push_back({mats[i].on_device(dw.get() + at), ys[i]->get(), mats[i].rows, nullptr});
        at += mats[i].bytes.size();
      }
      return parts;
    };
    const std::string dims = std::to_string(rows) +
                             (bc.part_rows.size() > 1 ? "(" + std::to_string(bc.part_rows.size()) + ")" : "") + " x " +
                             std::to_string(bc.cols);
    for (const int64_t tokens : token_counts) {
      const double flop = 2.0 * static_cast<double>(rows) * static_cast<double>(bc.cols) * static_cast<double>(tokens);
      const auto report = [&](const std::string& path, double seconds) {
        std::printf("%-13s %-5s %-17s %4lld %-16s %9.2f %8.1f\n", bc.name, type_name.c_str(), dims.c_str(),
                    static_cast<long long>(tokens), path.c_str(), seconds * 1e6, flop / seconds / 1e12);
      };
      const double gemm_seconds = testing::median_launch_seconds(copies, stream, [&](int c) {
        for (const cuda::MatvecPart& p : parts_of(c)) gemm_path(cublas, p.w, x.device(), p.y, p.ldy, tokens, scratch.get(), stream);
      });
      report("dequant+cuBLAS", gemm_seconds);
      if (tokens > kMmaMaxTokens) {
        std::fflush(stdout);
        continue;
      }
      const cuda::MmaShape chosen = cuda::matmul_dequant_mma_shape(rows, bc.cols, tokens);
      const auto time_shape = [&](const cuda::MmaShape& shape) {
        return testing::median_launch_seconds(copies, stream, [&](int c) {
          const std::vector<cuda::MatvecPart> parts = parts_of(c);
          cuda::matmul_dequant_mma_tiled(parts.data(), static_cast<int>(parts.size()), x.device(), false, tokens, shape,
                                         stream);
        });
      };
      const auto label = [](const cuda::MmaShape& s, bool is_chosen) {
        return "mma " + std::to_string(s.warp_rows) + "/" + std::to_string(s.splits) + (is_chosen ? "*" : "");
      };
      const double chosen_seconds = time_shape(chosen);
      report(label(chosen, true), chosen_seconds);
      double best_seconds = chosen_seconds;
      cuda::MmaShape best = chosen;
      for (const cuda::MmaShape& shape : sweep) {
        if (shape.warp_rows == chosen.warp_rows && shape.splits == chosen.splits) continue;
        if (shape.splits > std::max<int64_t>(1, bc.cols / 256)) continue;
        const double seconds = time_shape(shape);
        report(label(shape, false), seconds);
        if (seconds < best_seconds) best_seconds = seconds, best = shape;
      }
      std::printf("= %-11s %-5s %-17s %4lld choice %s %.2f us, best %s %.2f us, cuBLAS %.2f us: %s (%.2fx)\n", bc.name,
                  type_name.c_str(), dims.c_str(), static_cast<long long>(tokens), label(chosen, true).c_str(),
                  chosen_seconds * 1e6, label(best, false).c_str(), best_seconds * 1e6, gemm_seconds * 1e6,
                  chosen_seconds <= gemm_seconds ? "mma" : "cuBLAS", gemm_seconds / chosen_seconds);
      if (chosen_seconds > gemm_seconds) lost[type_name].push_back(tokens);
      std::fflush(stdout);
    }
  }
  // The largest measured mma token count below the first at which the choice lost.
  for (const TensorType type : {TensorType::Q4_K, TensorType::Q6_K, TensorType::Q5_0}) {
    const std::string type_name(tensor_type_name(type));
    const std::vector<int64_t>& l = lost[type_name];
    const int64_t first_loss = l.empty() ? kMmaMaxTokens + 1 : *std::min_element(l.begin(), l.end());
    int64_t keep = 0;
    for (const int64_t t : mma_token_counts) keep = t < first_loss ? t : keep;
    std::printf("crossover %-5s: choice beat cuBLAS in every case up to %lld tokens%s\n", type_name.c_str(),
                static_cast<long long>(keep), first_loss <= kMmaMaxTokens ? "" : " (all measured)");
  }
  cublasDestroy(cublas);
  cudaStreamDestroy(stream);
}

#endif  // REALIZAR_HAVE_CUDA

}  // namespace
}  // namespace realizar
