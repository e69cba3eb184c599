// Throughput of the scalar quantizers and dequantizers, one thread, on N(0,1) rows of 1M elements.
// Reports elements/s ("items_per_second"). Used for the table in docs/quantization.md.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "realizar/quant.h"

namespace {

constexpr int64_t kElements = 1 << 20;

const std::vector<float>& gaussian_row() {
  static const std::vector<float> row = [] {
    std::mt19937 gen(42);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    std::vector<float> x(kElements);
    for (float& v : x) v = dist(gen);
    return x;
  }();
  return row;
}

void BM_Quantize(benchmark::State& state, realizar::TensorType type) {
  const std::vector<float>& x = gaussian_row();
  std::vector<uint8_t> bytes(realizar::row_bytes(type, kElements));
  for (auto _ : state) {
    realizar::quantize_row(type, x.data(), bytes.data(), kElements);
    benchmark::DoNotOptimize(bytes.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * kElements);
}

void BM_Dequantize(benchmark::State& state, realizar::TensorType type) {
  const std::vector<float>& x = gaussian_row();
  std::vector<uint8_t> bytes(realizar::row_bytes(type, kElements));
  realizar::quantize_row(type, x.data(), bytes.data(), kElements);
  std::vector<float> y(kElements);
  for (auto _ : state) {
    realizar::dequantize_row(type, bytes.data(), y.data(), kElements);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * kElements);
}

using realizar::TensorType;
#define QUANT_BENCH(TYPE)                                                   \
  BENCHMARK_CAPTURE(BM_Quantize, TYPE, TensorType::TYPE)->Unit(benchmark::kMillisecond); \
  BENCHMARK_CAPTURE(BM_Dequantize, TYPE, TensorType::TYPE)->Unit(benchmark::kMillisecond);

QUANT_BENCH(F16)
QUANT_BENCH(BF16)
QUANT_BENCH(Q4_0)
QUANT_BENCH(Q4_1)
QUANT_BENCH(Q5_0)
QUANT_BENCH(Q5_1)
QUANT_BENCH(Q8_0)
QUANT_BENCH(Q4_K)
QUANT_BENCH(Q5_K)
QUANT_BENCH(Q6_K)
QUANT_BENCH(Q8_K)

}  // namespace

BENCHMARK_MAIN();
