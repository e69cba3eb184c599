// The CPU dot kernels against an independent definition: dequantize_row of the weight row and of
// the quantized activation row, multiplied in double. Also bounds the error that quantizing the
// activations to 8 bits adds, against the float activations.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/kernels.h"
#include "realizar/quant.h"
#include "realizar/quant_blocks.h"

namespace realizar {
namespace {

struct Case {
  TensorType type;
  int64_t n;
};

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  return std::string(tensor_type_name(info.param.type)) + "_" + std::to_string(info.param.n);
}

std::vector<float> normal_floats(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

// A weight row of `type`: quantized from normal floats, or for Q2_K/Q3_K (no quantizer) random
// bytes with sane super-block scales.
std::vector<uint8_t> random_weight_row(TensorType type, int64_t n, uint32_t seed) {
  std::vector<uint8_t> row(row_bytes(type, static_cast<uint64_t>(n)));
  if (can_quantize(type)) {
    const std::vector<float> values = normal_floats(n, seed);
    quantize_row(type, values.data(), row.data(), n);
    return row;
  }
  std::mt19937 rng(seed);
  for (uint8_t& b : row) b = static_cast<uint8_t>(rng());
  for (int64_t b = 0; b < n / QK_K; ++b) {
    if (type == TensorType::Q2_K) {
      auto* block = reinterpret_cast<block_q2_K*>(row.data()) + b;
      block->d = fp32_to_fp16(0.01f);
      block->dmin = fp32_to_fp16(0.005f);
    } else {
      reinterpret_cast<block_q3_K*>(row.data())[b].d = fp32_to_fp16(0.01f);
    }
  }
  return row;
}

std::vector<double> dequantized(TensorType type, const void* data, int64_t n) {
  std::vector<float> f(static_cast<size_t>(n));
  dequantize_row(type, data, f.data(), n);
  return {f.begin(), f.end()};
}

class CpuKernelTest : public ::testing::TestWithParam<Case> {
 protected:
  void check_kernel(cpu::DotKernel kernel) {
    const auto [type, n] = GetParam();
    const std::vector<uint8_t> w = random_weight_row(type, n, 7 + static_cast<uint32_t>(n));
    const std::vector<float> x = normal_floats(n, 11 + static_cast<uint32_t>(n));
    const TensorType act_type = cpu::activation_type(type);
    std::vector<uint8_t> act(row_bytes(act_type, static_cast<uint64_t>(n)));
    cpu::quantize_activation_row(act_type, x.data(), act.data(), n);

    const std::vector<double> wd = dequantized(type, w.data(), n);
    const std::vector<double> ad = dequantized(act_type, act.data(), n);
    double expected = 0.0, magnitude = 0.0, exact = 0.0, w_abs = 0.0, x_max = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      expected += wd[i] * ad[i];
      magnitude += std::abs(wd[i] * ad[i]);
      exact += wd[i] * x[i];
      w_abs += std::abs(wd[i]);
      x_max = std::max(x_max, std::abs(static_cast<double>(x[i])));
    }
    const float got = kernel(w.data(), act.data(), n);
    // Float32 accumulation of integer block sums: a few ulps of the sum of magnitudes.
    EXPECT_NEAR(got, expected, 2e-6 * magnitude + 1e-30) << "vs dequantized operands";
    // Rounding x to 8 bits moves each element by at most half a step, max|x| / 254.
    const double quant_bound = act_type == TensorType::F32 ? 0.0 : w_abs * x_max / 254.0;
    EXPECT_NEAR(got, exact, quant_bound + 2e-6 * magnitude) << "vs float activations";
  }
};

TEST_P(CpuKernelTest, FastKernelMatchesDequantizedDot) { check_kernel(cpu::dot_kernel(GetParam().type)); }

TEST_P(CpuKernelTest, ScalarKernelMatchesDequantizedDot) {
  const cpu::DotKernel scalar = cpu::scalar_dot_kernel(GetParam().type);
  if (scalar == nullptr) GTEST_SKIP() << "no scalar fused kernel (dequantizing fallback)";
  check_kernel(scalar);
}

std::vector<Case> all_cases() {
  const std::vector<TensorType> types = {
      TensorType::F32,  TensorType::F16,  TensorType::BF16, TensorType::Q8_0, TensorType::Q4_0,
      TensorType::Q4_1, TensorType::Q5_0, TensorType::Q5_1, TensorType::Q4_K, TensorType::Q5_K,
      TensorType::Q6_K, TensorType::Q2_K, TensorType::Q3_K};
  // Real row lengths of Qwen2.5 / TinyLlama, plus small and odd ones.
  const std::vector<int64_t> sizes = {7, 37, 96, 256, 512, 896, 1536, 1792, 2048, 3584, 4864, 5632, 8960, 18944};
  std::vector<Case> cases;
  for (TensorType type : types) {
    const int64_t block = std::max<int64_t>(tensor_type_info(type).block_size,
                                            tensor_type_info(cpu::activation_type(type)).block_size);
    for (int64_t n : sizes) {
      if (n % block == 0) cases.push_back({type, n});
    }
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(AllTypes, CpuKernelTest, ::testing::ValuesIn(all_cases()), case_name);

// The multi-token kernels give each token the dot product of the dequantized operands.
TEST(CpuKernels, MultiTokenKernelsMatchDequantizedDots) {
  for (TensorType type : {TensorType::Q4_K, TensorType::Q5_K, TensorType::Q6_K, TensorType::Q8_0,
                          TensorType::Q5_0, TensorType::Q4_0}) {
    const cpu::MultiDotKernel multi = cpu::multi_dot_kernel(type);
    if (multi == nullptr) continue;  // scalar build
    const TensorType act_type = cpu::activation_type(type);
    for (int64_t n : {256, 896, 1536, 8960}) {
      if (n % tensor_type_info(type).block_size != 0) continue;
      const std::vector<uint8_t> w = random_weight_row(type, n, 5);
      const std::vector<double> wd = dequantized(type, w.data(), n);
      const size_t stride = row_bytes(act_type, static_cast<uint64_t>(n));
      std::vector<uint8_t> act(stride * cpu::kMaxTokens);
      for (int t = 0; t < cpu::kMaxTokens; ++t) {
        const std::vector<float> x = normal_floats(n, 100 + static_cast<uint32_t>(t));
        cpu::quantize_activation_row(act_type, x.data(), act.data() + t * stride, n);
      }
      for (int tokens = 1; tokens <= cpu::kMaxTokens; ++tokens) {
        float out[cpu::kMaxTokens];
        multi(w.data(), act.data(), stride, tokens, n, out);
        for (int t = 0; t < tokens; ++t) {
          const std::vector<double> ad = dequantized(act_type, act.data() + t * stride, n);
          double expected = 0.0, magnitude = 0.0;
          for (int64_t i = 0; i < n; ++i) {
            expected += wd[i] * ad[i];
            magnitude += std::abs(wd[i] * ad[i]);
          }
          EXPECT_NEAR(out[t], expected, 2e-6 * magnitude)
              << tensor_type_name(type) << " n=" << n << " tokens=" << tokens << " t=" << t;
        }
      }
    }
  }
}

TEST(CpuKernels, UnsupportedWeightTypeIsAClearError) {
  try {
    cpu::dot_kernel(TensorType::IQ2_XXS);
    FAIL() << "expected an error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("no kernel for weight type IQ2_XXS"), std::string::npos) << e.what();
  }
}

TEST(CpuKernels, FloatHelpersMatchDoubleLoops) {
  for (int64_t n : {1, 8, 15, 64, 67}) {
    const std::vector<float> a = normal_floats(n, 3), b = normal_floats(n, 4);
    double dot = 0.0, magnitude = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      dot += static_cast<double>(a[i]) * b[i];
      magnitude += std::abs(static_cast<double>(a[i]) * b[i]);
    }
    EXPECT_NEAR(cpu::dot_f32(a.data(), b.data(), n), dot, 1e-6 * magnitude);
    std::vector<float> y = b;
    cpu::axpy_f32(0.5f, a.data(), y.data(), n);
    for (int64_t i = 0; i < n; ++i) EXPECT_FLOAT_EQ(y[i], b[i] + 0.5f * a[i]);
  }
}

}  // namespace
}  // namespace realizar
