// matmul_dequant_mma (tensor-core float16 matrix product on quantized weights) against a float64
// dot product of the dequantized weights with the float16-rounded activations, so that the only
// difference is the kernel's float16 weights and float32 summation; at the 7B shapes, odd sizes,
// with bias and accumulate. Each case runs the launch shape matmul_dequant_mma picks and several others (warps of 16 or 32 rows; K split over 1 to 8 CTAs of
// a cluster). Skips without a GPU.
//
// With REALIZAR_CUDA_BENCH=1 a benchmark also times the 7B shapes at 32, 64 and 512 tokens.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "realizar/quant.h"
#include "realizar/tensor_type.h"

#ifdef REALIZAR_HAVE_CUDA
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
  cuda::DeviceMatrix on_device(const DeviceVector<uint8_t>& d) const {
    return {static_cast<uint32_t>(type), rows, cols, row_bytes, d.get()};
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

struct MmaCase {
  TensorType type;
  int64_t rows, cols, tokens;
};

std::string case_name(const MmaCase& c) {
  return std::string(tensor_type_name(c.type)) + "_" + std::to_string(c.rows) + "x" +
         std::to_string(c.cols) + "_t" + std::to_string(c.tokens);
}

class CudaMma : public ::testing::TestWithParam<MmaCase> {};

// Each weight becomes the float16 scale * q + offset of its block (scale and offset themselves
// rounded to float16: up to three roundings of 2^-11 relative), so product term k is off by at
// most ~1.5e-3 |w_k x_k|, with random signs: an entry's error is a few 1e-4 of the root sum of
// squares of its terms, sqrt(sum_k (w_k x_k)^2), and the bound below leaves room for the largest of
// many entries. A wrong scale or element order in one 32-element block of a 3584-long row moves
// an entry by ~sqrt(32 / 3584) = 0.09 of that measure.
constexpr double kTolerance = 1e-2;

// y = W x + bias with accumulate = false, then y += W x (accumulate = true, no bias) over the
// first result, for each launch shape; max |error| over the checked entries relative to max |ref|.
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

  // Reference dot products (without bias) at the checked rows, and the root sum of squares of
  // their terms (the scale of their rounding error).
  const std::vector<int64_t> rows = checked_rows(c.rows);
  std::vector<double> dot(rows.size() * static_cast<size_t>(c.tokens)), terms(dot.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    const float* wr = w.row(rows[i]);
    for (int64_t t = 0; t < c.tokens; ++t) {
      const double* xt = x.values.data() + t * c.cols;
      double sum = 0.0, squares = 0.0;
      for (int64_t k = 0; k < c.cols; ++k) {
        const double term = static_cast<double>(wr[k]) * xt[k];
        sum += term;
        squares += term * term;
      }
      dot[i * c.tokens + t] = sum;
      terms[i * c.tokens + t] = std::sqrt(squares);
    }
  }
  // The largest error of the checked entries, each relative to the scale of its terms.
  const auto max_error = [&](const std::vector<float>& y, bool twice) {
    const double times = twice ? 2.0 : 1.0;
    double worst = 0.0;
    for (size_t i = 0; i < rows.size(); ++i) {
      for (int64_t t = 0; t < c.tokens; ++t) {
        const double want = times * dot[i * c.tokens + t] + bias[rows[i]];
        const float got = y[t * c.rows + rows[i]];
        if (std::isnan(got)) return std::numeric_limits<double>::infinity();
        worst = std::max(worst, std::abs(got - want) / (times * terms[i * c.tokens + t]));
      }
    }
    return worst;
  };
  const cuda::MmaShape shapes[] = {cuda::matmul_dequant_mma_shape(c.rows, c.cols, c.tokens),
                                   {32, 1}, {16, 1}, {32, 3}, {16, 8}, {32, 8}};
  for (const cuda::MmaShape shape : shapes) {
    const DeviceVector<float> y(static_cast<size_t>(c.tokens * c.rows));
    cuda::matmul_dequant_mma_tiled(w.on_device(dw), x.device(), y.get(), c.rows, db.get(), false,
                                c.tokens, shape, nullptr);
    const std::string name = "warp_rows " + std::to_string(shape.warp_rows) + ", splits " + std::to_string(shape.splits);
    EXPECT_LE(max_error(y.read(), false), kTolerance) << name;
    cuda::matmul_dequant_mma_tiled(w.on_device(dw), x.device(), y.get(), c.rows, nullptr, true,
                                c.tokens, shape, nullptr);
    EXPECT_LE(max_error(y.read(), true), kTolerance) << name << ", accumulated";
  }
}

std::vector<MmaCase> mma_cases() {
  std::vector<MmaCase> cases;
  for (TensorType t : {TensorType::Q4_0, TensorType::Q4_1, TensorType::Q5_0, TensorType::Q8_0,
                       TensorType::Q4_K, TensorType::Q5_K, TensorType::Q6_K}) {
    for (const int64_t tokens : {9, 32, 64, 512}) cases.push_back({t, 3584, 3584, tokens});
    for (const int64_t tokens : {32, 512}) cases.push_back({t, 18944, 3584, tokens});
    cases.push_back({t, 37, 1536, 13});  // rows in one ragged tile, tokens in one ragged tile
    cases.push_back({t, 100, 4864, 33});  // 0.5B FFN width; a second token tile of one token
    cases.push_back({t, 1, 3584, 1});
  }
  for (TensorType t : {TensorType::Q4_0, TensorType::Q4_1, TensorType::Q5_0, TensorType::Q8_0}) {
    cases.push_back({t, 53, 2080, 17});  // 65 blocks: the last 4-block unit holds one
    cases.push_back({t, 71, 896, 40});   // 28 blocks
  }
  cases.push_back({TensorType::Q6_K, 3584, 18944, 32});  // 7B FFN down
  cases.push_back({TensorType::Q6_K, 3584, 18944, 64});
  cases.push_back({TensorType::Q6_K, 21, 4864, 19});  // 19 blocks a row: rows only 2-byte aligned
  cases.push_back({TensorType::Q4_K, 21, 4864, 9});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Types, CudaMma, ::testing::ValuesIn(mma_cases()),
                         [](const auto& info) { return case_name(info.param); });

// Unsupported types launch nothing (y stays as it was).
TEST(CudaMma, UnsupportedTypeWritesNothing) {
  SKIP_WITHOUT_GPU();
  std::mt19937_64 rng(3);
  const Activations x(9, 256, rng);
  const std::vector<float> y0(9 * 4, 1.5f);
  const DeviceVector<float> y(y0);
  const DeviceVector<uint8_t> dw(std::vector<uint8_t>(4 * 256 * 4));
  const cuda::DeviceMatrix w{static_cast<uint32_t>(TensorType::F32), 4, 256, 256 * 4, dw.get()};
  cuda::matmul_dequant_mma(w, x.device(), y.get(), 4, nullptr, false, 9, nullptr);
  EXPECT_EQ(y.read(), y0);
}

// ---- benchmark (REALIZAR_CUDA_BENCH=1) ---------------------------------------------------------

struct BenchShape {
  const char* name;
  TensorType type;
  int64_t rows, cols;
};
constexpr BenchShape kBenchShapes[] = {{"7B q/o", TensorType::Q4_K, 3584, 3584},
                                       {"7B gate/up", TensorType::Q4_K, 18944, 3584},
                                       {"7B down", TensorType::Q6_K, 3584, 18944},
                                       {"7B k/v", TensorType::Q4_K, 512, 3584},
                                       {"0.5B ffn", TensorType::Q8_0, 4864, 896}};

bool env_is_one(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr && std::string_view(value) == "1";
}

// One launch per bench shape at 32 tokens with the shape matmul_dequant_mma picks, outside any graph,
// for a profiler (REALIZAR_CUDA_PROFILE=1 ncu ... cuda_mma_test --gtest_filter=*ProfileOnce*).
TEST(CudaMmaBench, ProfileOnce) {
  if (!env_is_one("REALIZAR_CUDA_PROFILE")) GTEST_SKIP() << "REALIZAR_CUDA_PROFILE=1 runs it";
  SKIP_WITHOUT_GPU();
  std::mt19937_64 rng(11);
  for (const BenchShape& s : kBenchShapes) {
    const QuantMatrix w(s.type, s.rows, s.cols, rng);
    const DeviceVector<uint8_t> dw(w.bytes);
    const Activations x(32, s.cols, rng);
    const DeviceVector<float> y(static_cast<size_t>(32 * s.rows));
    cuda::matmul_dequant_mma(w.on_device(dw), x.device(), y.get(), s.rows, nullptr, false, 32, nullptr);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  }
}

TEST(CudaMmaBench, SevenBShapes) {
  if (!env_is_one("REALIZAR_CUDA_BENCH")) GTEST_SKIP() << "REALIZAR_CUDA_BENCH=1 runs it";
  SKIP_WITHOUT_GPU();
  using Shape = BenchShape;
  const auto& shapes = kBenchShapes;
  std::printf("%-11s %-5s %6s %6s %4s %5s %9s %8s %8s\n", "shape", "type", "rows", "cols", "T", "wr/k",
              "us", "GB/s", "TFLOP/s");
  std::mt19937_64 rng(11);
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  for (const Shape& s : shapes) {
    const QuantMatrix one(s.type, s.rows, s.cols, rng);
    const size_t matrix_bytes = one.bytes.size();
    const int copies = static_cast<int>(std::max<size_t>(2, (size_t{200} << 20) / matrix_bytes + 1));
    std::vector<uint8_t> all(matrix_bytes * copies);
    for (int c = 0; c < copies; ++c) std::copy(one.bytes.begin(), one.bytes.end(), all.begin() + static_cast<std::ptrdiff_t>(c * matrix_bytes));
    const DeviceVector<uint8_t> dw(all);
    const Activations x(512, s.cols, rng);
    const DeviceVector<float> y(static_cast<size_t>(512 * s.rows));
    for (const int64_t tokens : {32, 64, 512}) {
      const cuda::MmaShape chosen = cuda::matmul_dequant_mma_shape(s.rows, s.cols, tokens);
      const cuda::MmaShape tried[] = {{32, 1}, {32, 2}, {32, 3}, {32, 8}, {16, 1}, {16, 2}, {16, 3}, {16, 4}, {16, 6}, {16, 8}};
      for (const cuda::MmaShape shape : tried) {
        const bool is_chosen = shape.warp_rows == chosen.warp_rows && shape.splits == chosen.splits;
        if (!is_chosen && tokens == 512) continue;  // prefill goes through cuBLAS: the chosen one only
        const double seconds = testing::median_launch_seconds(copies, stream, [&](int c) {
          const cuda::DeviceMatrix m{static_cast<uint32_t>(s.type), s.rows, s.cols, one.row_bytes,
                                     dw.get() + c * matrix_bytes};
          cuda::matmul_dequant_mma_tiled(m, x.device(), y.get(), s.rows, nullptr, false, tokens, shape, stream);
        });
        std::printf("%-11s %-5s %6lld %6lld %4lld %2d/%d%s %9.2f %8.0f %8.1f\n", s.name,
                    std::string(tensor_type_name(s.type)).c_str(), static_cast<long long>(s.rows),
                    static_cast<long long>(s.cols), static_cast<long long>(tokens), shape.warp_rows,
                    shape.splits, is_chosen ? "*" : " ", seconds * 1e6, matrix_bytes / seconds / 1e9,
                    2.0 * s.rows * s.cols * tokens / seconds / 1e12);
      }
    }
    std::fflush(stdout);
  }
  cudaStreamDestroy(stream);
}

#endif  // REALIZAR_HAVE_CUDA

}  // namespace
}  // namespace realizar
