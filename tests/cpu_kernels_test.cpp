// The CPU kernel sets against independent definitions, for every set this CPU can run (each one
// forced, the scalar set included; sets the CPU lacks are skipped and say so):
// - GEMM on repacked weights: dequantize_row of the original GGUF rows and of the quantized
//   activations, multiplied in double;
// - activation quantizers: ggml's quantize_row_q8_K / quantize_row_q8_0, bit for bit;
// - attention: softmax(q.k) v in double over the float16 cache rows;
// - float helpers: double loops.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/cpu_features.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/packed_weights.h"
#include "realizar/error.h"
#include "realizar/quant.h"
#include "realizar/quant_blocks.h"
#include "util/cpu_count.h"
#include "util/thread_pool.h"

namespace realizar {
namespace {

using cpu::Isa;

constexpr Isa kIsas[] = {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Amx};

std::string isa_label(Isa isa) {
  std::string name(cpu::isa_name(isa));
  std::replace(name.begin(), name.end(), '-', '_');
  return name;
}

// The kernel set of `isa`, or nullptr (and a skip message) when this CPU cannot run it.
const cpu::KernelSet* kernels_or_skip(Isa isa) {
  if (!cpu::isa_supported(isa, cpu::cpu_features())) return nullptr;
  return &cpu::kernel_set(isa);
}

#define KERNELS_OR_SKIP(isa)                                                                   \
  const cpu::KernelSet* kernels_ptr = kernels_or_skip(isa);                                    \
  if (kernels_ptr == nullptr) GTEST_SKIP() << "this CPU cannot run the " << cpu::isa_name(isa) \
                                           << " kernels";                                      \
  const cpu::KernelSet& kernels = *kernels_ptr

std::vector<float> normal_floats(int64_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

// A rows x cols matrix of `type` quantized from normal floats, and its dequantized values.
struct Matrix {
  std::vector<uint8_t> bytes;
  WeightTensor tensor;
  std::vector<double> values;  // [rows][cols]

  Matrix(TensorType type, int64_t rows, int64_t cols, uint32_t seed) {
    const size_t row_size = row_bytes(type, static_cast<uint64_t>(cols));
    bytes.resize(row_size * static_cast<size_t>(rows));
    values.resize(static_cast<size_t>(rows * cols));
    std::vector<float> row(static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows; ++r) {
      // Rows of different scales, and an outlier, as real matrices have.
      std::vector<float> x = normal_floats(cols, seed + static_cast<uint32_t>(r), 1.0f + 0.25f * static_cast<float>(r % 5));
      x[static_cast<size_t>(r % cols)] *= 6.0f;
      quantize_row(type, x.data(), bytes.data() + static_cast<size_t>(r) * row_size, cols);
      dequantize_row(type, bytes.data() + static_cast<size_t>(r) * row_size, row.data(), cols);
      std::copy(row.begin(), row.end(), values.begin() + r * cols);
    }
    tensor = WeightTensor{type, cols, rows, bytes.data(), row_size};
  }
};

// `tokens` activation rows quantized by the scalar set, and their dequantized values.
struct Activations {
  cpu::ActivationFormat format;
  size_t stride;
  std::vector<uint8_t> bytes;
  std::vector<double> values;  // [tokens][cols]

  Activations(TensorType weight_type, int64_t tokens, int64_t cols, uint32_t seed)
      : format(cpu::activation_format(weight_type)), stride(cpu::activation_row_bytes(format, cols)) {
    bytes.resize(stride * static_cast<size_t>(tokens));
    values.resize(static_cast<size_t>(tokens * cols));
    const cpu::KernelSet& scalar = cpu::scalar_kernels();
    for (int64_t t = 0; t < tokens; ++t) {
      const std::vector<float> x = normal_floats(cols, seed + 1000 * static_cast<uint32_t>(t), 0.5f + 0.5f * static_cast<float>(t % 3));
      uint8_t* row = bytes.data() + static_cast<size_t>(t) * stride;
      double* v = values.data() + t * cols;
      if (format == cpu::ActivationFormat::Q8K) {
        auto* blocks = reinterpret_cast<cpu::ActBlockK*>(row);
        scalar.quantize_k(x.data(), blocks, cols);
        for (int64_t i = 0; i < cols; ++i) v[i] = static_cast<double>(blocks[i / QK_K].d) * blocks[i / QK_K].qs[i % QK_K];
      } else {
        auto* blocks = reinterpret_cast<cpu::ActBlock32*>(row);
        scalar.quantize_32(x.data(), blocks, cols);
        for (int64_t i = 0; i < cols; ++i) v[i] = static_cast<double>(blocks[i / 32].d) * blocks[i / 32].qs[i % 32];
      }
    }
  }
};

// Runs `kernel` over every group of the packed matrix: out[t][row].
std::vector<float> run_gemm(cpu::GemmKernel kernel, const cpu::PackedMatrix& packed, const Activations& act,
                            int64_t first_token, int64_t tokens) {
  std::vector<float> out(static_cast<size_t>(tokens * packed.rows()));
  std::vector<float> group_out(static_cast<size_t>(tokens * cpu::kGroupRows));
  for (int64_t g = 0; g < packed.groups(); ++g) {
    kernel(packed.group(g), act.bytes.data() + static_cast<size_t>(first_token) * act.stride, act.stride, tokens,
           packed.blocks(), group_out.data());
    for (int64_t t = 0; t < tokens; ++t) {
      for (int64_t r = 0; r < cpu::kGroupRows && g * cpu::kGroupRows + r < packed.rows(); ++r) {
        out[static_cast<size_t>(t * packed.rows() + g * cpu::kGroupRows + r)] = group_out[static_cast<size_t>(t * cpu::kGroupRows + r)];
      }
    }
  }
  return out;
}

struct GemmCase {
  Isa isa;
  TensorType type;
};

void PrintTo(const GemmCase& c, std::ostream* os) {
  *os << cpu::isa_name(c.isa) << " " << tensor_type_name(c.type);
}

std::string gemm_case_name(const ::testing::TestParamInfo<GemmCase>& info) {
  return isa_label(info.param.isa) + "_" + std::string(tensor_type_name(info.param.type));
}

class CpuGemmTest : public ::testing::TestWithParam<GemmCase> {};

// Every output of the packed GEMM equals the dot product of the dequantized weight row and
// activation row, up to float32 rounding: each block's integer dot product is exact, and the
// float32 block scales, products and running sum add a few roundings per block; the bound is
// 2e-6 of sum |w * a| (a wrong nibble, bit or scale is off by far more). Shapes: real row lengths
// and odd ones, row counts that are not multiples of 16 (the padded group), and token counts that
// cover every tile size and remainder of the SIMD kernels (AMX: two tiles of 16 and 5 left over).
TEST_P(CpuGemmTest, MatchesDequantizedProducts) {
  const auto [isa, type] = GetParam();
  KERNELS_OR_SKIP(isa);
  ThreadPool pool(1);
  const int64_t block = tensor_type_info(type).block_size;
  const std::vector<int64_t> widths = block == QK_K ? std::vector<int64_t>{256, 1536, 4864}
                                                    : std::vector<int64_t>{96, 576, 896, 4864};
  for (int64_t cols : widths) {
    for (int64_t rows : {16, 37}) {
      const Matrix w(type, rows, cols, static_cast<uint32_t>(rows * 7 + cols));
      const cpu::PackedMatrix packed(w.tensor, pool);
      ASSERT_EQ(packed.groups(), (rows + 15) / 16);
      for (int64_t tokens : {cols > 1536 ? int64_t{7} : int64_t{13}, int64_t{37}}) {
        const Activations act(type, tokens, cols, static_cast<uint32_t>(cols));
        const std::vector<float> got = run_gemm(kernels.gemm_for(type), packed, act, 0, tokens);
        double worst = 0.0;
        for (int64_t t = 0; t < tokens; ++t) {
          for (int64_t r = 0; r < rows; ++r) {
            double want = 0.0, magnitude = 0.0;
            for (int64_t i = 0; i < cols; ++i) {
              const double p = w.values[static_cast<size_t>(r * cols + i)] * act.values[static_cast<size_t>(t * cols + i)];
              want += p;
              magnitude += std::abs(p);
            }
            const double error = std::abs(got[static_cast<size_t>(t * rows + r)] - want) / magnitude;
            worst = std::max(worst, error);
            ASSERT_LT(error, 2e-6) << "cols " << cols << " rows " << rows << " tokens " << tokens << " token " << t << " row " << r
                                   << ": got " << got[static_cast<size_t>(t * rows + r)] << ", want " << want;
          }
        }
        RecordProperty("worst_" + std::to_string(rows) + "x" + std::to_string(cols) + "_" + std::to_string(tokens),
                       ::testing::PrintToString(worst));
      }
    }
  }
}

// A token's outputs do not depend on the tokens run with it: the backend promises results that
// are the same whatever the batch (each token alone, at any offset in a tile, gives the same bits).
TEST_P(CpuGemmTest, TokenResultsDoNotDependOnTheBatch) {
  const auto [isa, type] = GetParam();
  KERNELS_OR_SKIP(isa);
  ThreadPool pool(1);
  const int64_t cols = tensor_type_info(type).block_size == QK_K ? 512 : 128, rows = 32, tokens = 37;
  const Matrix w(type, rows, cols, 3);
  const cpu::PackedMatrix packed(w.tensor, pool);
  const Activations act(type, tokens, cols, 5);
  const std::vector<float> together = run_gemm(kernels.gemm_for(type), packed, act, 0, tokens);
  for (int64_t t = 0; t < tokens; ++t) {
    const std::vector<float> alone = run_gemm(kernels.gemm_for(type), packed, act, t, 1);
    EXPECT_EQ(alone, std::vector<float>(together.begin() + t * rows, together.begin() + (t + 1) * rows)) << "token " << t;
  }
}

// The AMX kernels give the VNNI kernels' bits: both sum the same exact int32 products per scale
// unit and combine them in the same float32 order, so a token's result does not depend on which
// set ran it (tiles of 16 on the tile unit, the rest on VNNI). Real shapes, every packed type.
TEST(CpuAmxGemm, EqualsTheVnniKernelsBitForBit) {
  KERNELS_OR_SKIP(Isa::Amx);
  const cpu::KernelSet& vnni = cpu::kernel_set(Isa::Avx512);
  ThreadPool pool(1);
  for (TensorType type : cpu::kPackedTypes) {
    const int64_t cols = tensor_type_info(type).block_size == QK_K ? 1536 : 896, rows = 48;
    const Matrix w(type, rows, cols, 11);
    const cpu::PackedMatrix packed(w.tensor, pool);
    for (int64_t tokens : {16, 21, 64}) {
      const Activations act(type, tokens, cols, 17);
      EXPECT_EQ(run_gemm(kernels.gemm_for(type), packed, act, 0, tokens), run_gemm(vnni.gemm_for(type), packed, act, 0, tokens))
          << tensor_type_name(type) << ", " << tokens << " tokens";
    }
  }
}

std::vector<GemmCase> gemm_cases() {
  std::vector<GemmCase> cases;
  for (Isa isa : kIsas) {
    for (TensorType type : cpu::kPackedTypes) cases.push_back({isa, type});
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(AllSets, CpuGemmTest, ::testing::ValuesIn(gemm_cases()), gemm_case_name);

// ---- the rest of each kernel set ---------------------------------------------------------------

class CpuKernelSetTest : public ::testing::TestWithParam<Isa> {};

std::string isa_case_name(const ::testing::TestParamInfo<Isa>& info) { return isa_label(info.param); }

// Inputs for the quantizers: normal values, a row with ties of opposite sign at the maximum, zeros,
// and values at exact halves of the quantization step (rounding ties).
std::vector<std::vector<float>> quantizer_inputs(int64_t n) {
  std::vector<std::vector<float>> inputs = {normal_floats(n, 1), normal_floats(n, 2, 30.0f), std::vector<float>(static_cast<size_t>(n), 0.0f)};
  std::vector<float> ties = normal_floats(n, 3);
  ties[5] = 4.0f;
  ties[9] = -4.0f;
  inputs.push_back(ties);
  // With max |x| = 127 the step is 1: x.5 values are exact rounding ties.
  std::vector<float> halves(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) halves[static_cast<size_t>(i)] = i % 32 == 0 ? 127.0f : static_cast<float>(i % 253 - 126) + 0.5f;
  inputs.push_back(halves);
  return inputs;
}

TEST_P(CpuKernelSetTest, QuantizeKIsGgmlQ8KBitForBit) {
  KERNELS_OR_SKIP(GetParam());
  constexpr int64_t n = 3 * QK_K;
  for (const std::vector<float>& x : quantizer_inputs(n)) {
    std::vector<block_q8_K> want(n / QK_K);
    quantize_row_q8_K(x.data(), want.data(), n);
    std::vector<cpu::ActBlockK> got(n / QK_K);
    kernels.quantize_k(x.data(), got.data(), n);
    for (int64_t b = 0; b < n / QK_K; ++b) {
      EXPECT_EQ(got[b].d, want[b].d) << "block " << b;
      EXPECT_EQ(0, std::memcmp(got[b].qs, want[b].qs, QK_K)) << "block " << b;
      EXPECT_EQ(0, std::memcmp(got[b].bsums, want[b].bsums, sizeof want[b].bsums)) << "block " << b;
      for (int s = 0; s < QK_K / 32; ++s) EXPECT_EQ(got[b].bsums32[s], want[b].bsums[2 * s] + want[b].bsums[2 * s + 1]);
    }
  }
}

TEST_P(CpuKernelSetTest, Quantize32IsGgmlQ8_0BitForBitWithSums) {
  KERNELS_OR_SKIP(GetParam());
  constexpr int64_t n = 7 * 32;
  for (const std::vector<float>& x : quantizer_inputs(n)) {
    std::vector<block_q8_0> want(n / 32);
    quantize_row_q8_0(x.data(), want.data(), n);
    std::vector<cpu::ActBlock32> got(n / 32);
    kernels.quantize_32(x.data(), got.data(), n);
    for (int64_t b = 0; b < n / 32; ++b) {
      EXPECT_EQ(got[b].d, fp16_to_fp32(want[b].d)) << "block " << b;
      EXPECT_EQ(0, std::memcmp(got[b].qs, want[b].qs, 32)) << "block " << b;
      int sum = 0;
      for (int i = 0; i < 32; ++i) sum += want[b].qs[i];
      EXPECT_EQ(got[b].sum, sum) << "block " << b;
      EXPECT_EQ(got[b].s, fp16_to_fp32(want[b].d) * static_cast<float>(sum)) << "block " << b;
    }
  }
}

// Attention over a paged float16 cache (blocks out of order, 3 KV heads of which we read the
// middle one), against softmax in double; each query's result is also the same, bit for bit, when
// it runs alone.
TEST_P(CpuKernelSetTest, AttentionMatchesSoftmaxInDouble) {
  KERNELS_OR_SKIP(GetParam());
  for (int64_t head_dim : {64, 128}) {
    constexpr int64_t kv_heads = 3, head = 1;
    const int64_t kv_dim = kv_heads * head_dim;
    const std::vector<int32_t> table = {5, 0, 3, 1, 4, 2};  // 6 blocks: up to 96 positions
    const int64_t slots = 6 * 16;
    std::vector<ggml_half> keys(static_cast<size_t>(slots * kv_dim)), values(keys.size());
    const std::vector<float> kf = normal_floats(static_cast<int64_t>(keys.size()), 11, 2.0f);
    const std::vector<float> vf = normal_floats(static_cast<int64_t>(keys.size()), 12);
    const auto key = [&](int64_t slot, int64_t e) { return kf[static_cast<size_t>(slot * kv_dim + head * head_dim + e)]; };
    for (int64_t slot = 0; slot < slots; ++slot) {
      for (int64_t h = 0; h < kv_heads; ++h) {
        for (int64_t e = 0; e < head_dim; ++e) {
          keys[static_cast<size_t>(cpu::key_cache_index(slot, h, e, kv_heads, head_dim))] = fp32_to_fp16(kf[static_cast<size_t>(slot * kv_dim + h * head_dim + e)]);
        }
      }
    }
    for (size_t i = 0; i < values.size(); ++i) values[i] = fp32_to_fp16(vf[i]);
    const std::vector<int64_t> lengths = {1, 15, 16, 17, 40, 96, 33};
    const int64_t queries = static_cast<int64_t>(lengths.size());
    const std::vector<float> q = normal_floats(queries * head_dim, 13);
    std::vector<float> out(static_cast<size_t>(queries * head_dim));
    std::vector<const float*> q_ptr;
    std::vector<float*> out_ptr;
    for (int64_t i = 0; i < queries; ++i) {
      q_ptr.push_back(q.data() + i * head_dim);
      out_ptr.push_back(out.data() + i * head_dim);
    }
    std::vector<float> scratch(static_cast<size_t>(cpu::attention_scratch_floats(queries, head_dim, 96)));
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    const ggml_half* k0 = keys.data() + head * head_dim * 16;
    const ggml_half* v0 = values.data() + head * head_dim;
    const auto args = [&](const float* const* qp, float* const* op, const int64_t* len, int64_t n) {
      return cpu::AttentionArgs{qp, op, len, n, table.data(), k0, 16 * kv_dim, v0, kv_dim, head_dim, scale, scratch.data()};
    };
    kernels.attention(args(q_ptr.data(), out_ptr.data(), lengths.data(), queries));
    for (int64_t i = 0; i < queries; ++i) {
      const int64_t len = lengths[static_cast<size_t>(i)];
      std::vector<double> s(static_cast<size_t>(len));
      double max = -INFINITY, total = 0.0;
      for (int64_t j = 0; j < len; ++j) {
        const int64_t slot = table[static_cast<size_t>(j / 16)] * 16 + j % 16;
        double dot = 0.0;
        for (int64_t e = 0; e < head_dim; ++e) {
          dot += static_cast<double>(q[static_cast<size_t>(i * head_dim + e)]) * fp16_to_fp32(fp32_to_fp16(key(slot, e)));
        }
        s[static_cast<size_t>(j)] = dot * scale;
        max = std::max(max, s[static_cast<size_t>(j)]);
      }
      for (double& x : s) total += (x = std::exp(x - max));
      for (int64_t e = 0; e < head_dim; ++e) {
        double want = 0.0;
        for (int64_t j = 0; j < len; ++j) {
          const int64_t slot = table[static_cast<size_t>(j / 16)] * 16 + j % 16;
          want += s[static_cast<size_t>(j)] / total * fp16_to_fp32(v0[slot * kv_dim + e]);
        }
        // float32 dots of 64-128 terms and a softmax over <= 96 keys: ~1e-6 relative; values ~1.
        EXPECT_NEAR(out[static_cast<size_t>(i * head_dim + e)], want, 2e-5) << "query " << i << " element " << e;
      }
      // Alone, the query gives the same bits.
      std::vector<float> alone(static_cast<size_t>(head_dim));
      float* alone_ptr = alone.data();
      kernels.attention(args(&q_ptr[static_cast<size_t>(i)], &alone_ptr, &lengths[static_cast<size_t>(i)], 1));
      EXPECT_EQ(alone, std::vector<float>(out.begin() + i * head_dim, out.begin() + (i + 1) * head_dim)) << "query " << i;
    }
  }
}

TEST_P(CpuKernelSetTest, FloatHelpersMatchDoubleLoops) {
  KERNELS_OR_SKIP(GetParam());
  for (int64_t n : {1, 8, 15, 64, 67, 896}) {
    const std::vector<float> a = normal_floats(n, 3), b = normal_floats(n, 4, 3.0f);
    std::vector<ggml_half> a16(static_cast<size_t>(n));
    std::vector<uint16_t> a_bf16(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      a16[static_cast<size_t>(i)] = fp32_to_fp16(a[static_cast<size_t>(i)]);
      a_bf16[static_cast<size_t>(i)] = fp32_to_bf16(a[static_cast<size_t>(i)]);
    }
    double dot = 0.0, dot16 = 0.0, dot_bf16 = 0.0, magnitude = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      const size_t k = static_cast<size_t>(i);
      dot += static_cast<double>(a[k]) * b[k];
      dot16 += static_cast<double>(fp16_to_fp32(a16[k])) * b[k];
      dot_bf16 += static_cast<double>(bf16_to_fp32(a_bf16[k])) * b[k];
      magnitude += std::abs(static_cast<double>(a[k]) * b[k]);
    }
    EXPECT_NEAR(kernels.dot_f32(a.data(), b.data(), n), dot, 1e-6 * magnitude) << n;
    EXPECT_NEAR(kernels.dot_f16(a16.data(), b.data(), n), dot16, 1e-6 * magnitude) << n;
    EXPECT_NEAR(kernels.dot_bf16(a_bf16.data(), b.data(), n), dot_bf16, 1e-6 * magnitude) << n;
    std::vector<ggml_half> converted(static_cast<size_t>(n));
    kernels.to_f16(b.data(), converted.data(), n);
    for (int64_t i = 0; i < n; ++i) EXPECT_EQ(converted[static_cast<size_t>(i)], fp32_to_fp16(b[static_cast<size_t>(i)])) << i;
    std::vector<float> swiglu(static_cast<size_t>(n));
    kernels.swiglu(b.data(), a.data(), swiglu.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      const double g = b[static_cast<size_t>(i)];
      const double want = g / (1.0 + std::exp(-g)) * a[static_cast<size_t>(i)];
      EXPECT_NEAR(swiglu[static_cast<size_t>(i)], want, 1e-6 * (std::abs(want) + 1e-3)) << i;
    }
  }
}

TEST_P(CpuKernelSetTest, UnpackedTypeHasNoGemmKernel) {
  KERNELS_OR_SKIP(GetParam());
  EXPECT_THAT([&] { kernels.gemm_for(TensorType::Q2_K); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("no GEMM kernel for Q2_K")));
}

INSTANTIATE_TEST_SUITE_P(AllSets, CpuKernelSetTest, ::testing::ValuesIn(kIsas), isa_case_name);

// ---- packing and dispatch ----------------------------------------------------------------------

TEST(CpuPacking, RefusesTypesWithoutALayout) {
  ThreadPool pool(1);
  std::vector<uint8_t> bytes(4 * row_bytes(TensorType::Q2_K, 256));
  const WeightTensor q2{TensorType::Q2_K, 256, 4, bytes.data(), row_bytes(TensorType::Q2_K, 256)};
  EXPECT_THAT([&] { cpu::PackedMatrix packed(q2, pool); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("no packed layout for Q2_K")));
  EXPECT_FALSE(cpu::can_pack(TensorType::F16));
  EXPECT_TRUE(cpu::can_pack(TensorType::Q6_K));
}

TEST(CpuDispatch, ForcedSetsAreCheckedAgainstTheCpu) {
  cpu::CpuFeatures none;
  EXPECT_EQ(cpu::best_isa(none), Isa::Scalar);
  EXPECT_EQ(cpu::choose_isa(none, std::nullopt), Isa::Scalar);
  EXPECT_EQ(cpu::choose_isa(none, "scalar"), Isa::Scalar);
  EXPECT_THAT([&] { cpu::choose_isa(none, "avx2"); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("REALIZAR_CPU_ISA=avx2: this CPU cannot run the avx2 kernels (best: scalar)")));
  EXPECT_THAT([&] { cpu::choose_isa(none, "sse9"); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("REALIZAR_CPU_ISA must be amx, avx512, avx2 or scalar, got 'sse9'")));
  cpu::CpuFeatures avx2;
  avx2.avx2 = avx2.fma = avx2.f16c = true;
  EXPECT_EQ(cpu::best_isa(avx2), Isa::Avx2);
  cpu::CpuFeatures avx512_no_vnni = avx2;
  avx512_no_vnni.avx512f = avx512_no_vnni.avx512bw = avx512_no_vnni.avx512dq = avx512_no_vnni.avx512vl = true;
  EXPECT_EQ(cpu::best_isa(avx512_no_vnni), Isa::Avx2);
  cpu::CpuFeatures avx512 = avx512_no_vnni;
  avx512.avx512vnni = true;
  EXPECT_EQ(cpu::best_isa(avx512), Isa::Avx512);
  EXPECT_EQ(cpu::choose_isa(avx512, "avx2"), Isa::Avx2);
  EXPECT_EQ(cpu::isa_name(Isa::Avx512), "avx512-vnni");
  EXPECT_THAT([&] { cpu::choose_isa(avx512, "amx"); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("REALIZAR_CPU_ISA=amx: this CPU cannot run the amx-int8 kernels (best: avx512-vnni)")));
  cpu::CpuFeatures amx = avx512;
  amx.amx_int8 = true;
  EXPECT_EQ(cpu::best_isa(amx), Isa::Amx);
  EXPECT_EQ(cpu::choose_isa(amx, "avx512"), Isa::Avx512);
  amx.avx512vnni = false;  // the AMX set's other kernels are the AVX-512 VNNI ones
  EXPECT_FALSE(cpu::isa_supported(Isa::Amx, amx));
}

TEST(CpuDispatch, PhysicalCoresAreAtMostTheUsableCpus) {
  const int cores = cpu::physical_core_count();
  EXPECT_GE(cores, 1);
  EXPECT_LE(cores, usable_cpu_count());
}

}  // namespace
}  // namespace realizar
