// Micro-benchmark of the decode matrix-vector kernels at the real models' shapes: achieved weight
// bandwidth (bytes of the quantized matrix per launch over the launch's time). Runs only with
// REALIZAR_CUDA_BENCH=1 (it takes seconds and needs a quiet GPU); otherwise skips.
// REALIZAR_CUDA_BENCH_SHAPE=TEXT runs only the shapes whose name contains TEXT (for a profiler).
//
// Method (docs/perf-notes.md, "CUDA backend"): several copies of each matrix, together over 200 MB (3x the
// H200's 60 MB L2), launched one after another in a CUDA graph so that each launch reads from
// DRAM; the graph is replayed 20 times, each replay timed with events; the median replay time
// over the copies is the time per launch. Weights are random quantized rows (not zeros), tiled.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "realizar/quant.h"
#include "realizar/tensor_type.h"

#ifdef REALIZAR_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "backend/cuda/device_info.h"
#include "backend/cuda/kernels.h"
#include "gpu/cuda_test_support.h"
#endif

namespace realizar {
namespace {

#ifndef REALIZAR_HAVE_CUDA
TEST(CudaMatvecBench, SkippedWithoutCuda) { GTEST_SKIP() << "built without the CUDA backend"; }
#else

void ok(cudaError_t status) { ASSERT_EQ(status, cudaSuccess) << cudaGetErrorString(status); }

template <class T>
T* device_alloc(size_t bytes) {
  void* p = nullptr;
  EXPECT_EQ(cudaMalloc(&p, bytes), cudaSuccess);
  return static_cast<T*>(p);
}

struct BenchShape {
  const char* model;
  TensorType type;
  int64_t rows, cols;
};

TEST(CudaMatvecBench, WeightBandwidthAtModelShapes) {
  const char* enabled = std::getenv("REALIZAR_CUDA_BENCH");
  if (enabled == nullptr || std::string_view(enabled) != "1") GTEST_SKIP() << "REALIZAR_CUDA_BENCH=1 runs it";
  if (cuda::list_devices().empty()) GTEST_SKIP() << "no CUDA device";
  const std::vector<BenchShape> shapes = {
      {"0.5B qkv/o", TensorType::Q5_0, 896, 896},    {"0.5B ffn", TensorType::Q8_0, 4864, 896},
      {"7B q/o", TensorType::Q4_K, 3584, 3584},      {"7B gate/up", TensorType::Q4_K, 18944, 3584},
      {"7B down", TensorType::Q6_K, 3584, 18944},    {"32B gate/up", TensorType::Q4_K, 27648, 5120},
      {"32B down", TensorType::Q6_K, 5120, 27648},   {"7B Q5_K", TensorType::Q5_K, 18944, 3584},
      {"SmolLM Q4_1", TensorType::Q4_1, 1536, 576},  {"7B down", TensorType::Q4_K, 3584, 18944},
      {"7B output", TensorType::Q6_K, 152064, 3584},
  };
  const double copy_bandwidth = cuda::measure_device_copy_bandwidth();
  std::printf("copy bandwidth %.0f GB/s (read + write)\n", copy_bandwidth / 1e9);
  std::printf("%-12s %-5s %6s %6s %3s %9s %9s %6s\n", "shape", "type", "rows", "cols", "T", "us",
              "GB/s", "of copy");
  cudaStream_t stream;
  ok(cudaStreamCreate(&stream));
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  const char* only = std::getenv("REALIZAR_CUDA_BENCH_SHAPE");
  for (const BenchShape& s : shapes) {
    if (only != nullptr && std::string_view(s.model).find(only) == std::string_view::npos) continue;
    const size_t row_bytes = static_cast<size_t>(::realizar::row_bytes(s.type, static_cast<uint64_t>(s.cols)));
    const size_t matrix_bytes = row_bytes * static_cast<size_t>(s.rows);
    const int copies = static_cast<int>(std::max<size_t>(2, (size_t{200} << 20) / matrix_bytes + 1));
    // 64 random rows, tiled over every row of every copy.
    std::vector<uint8_t> tile(row_bytes * 64);
    std::vector<float> src(static_cast<size_t>(s.cols));
    for (int r = 0; r < 64; ++r) {
      for (float& v : src) v = dist(rng);
      quantize_row(s.type, src.data(), tile.data() + r * row_bytes, s.cols);
    }
    std::vector<uint8_t> host(matrix_bytes);
    for (size_t at = 0; at < matrix_bytes; at += tile.size()) {
      std::copy_n(tile.begin(), std::min(tile.size(), matrix_bytes - at), host.begin() + static_cast<std::ptrdiff_t>(at));
    }
    uint8_t* weights = device_alloc<uint8_t>(matrix_bytes * copies);
    for (int c = 0; c < copies; ++c) ok(cudaMemcpy(weights + c * matrix_bytes, host.data(), matrix_bytes, cudaMemcpyHostToDevice));
    constexpr int64_t kTokens = 8;
    std::vector<float> x(static_cast<size_t>(kTokens * s.cols));
    for (float& v : x) v = dist(rng);
    float* dx = device_alloc<float>(x.size() * sizeof(float));
    float* dy = device_alloc<float>(static_cast<size_t>(kTokens * s.rows) * sizeof(float));
    int8_t* dq = device_alloc<int8_t>(x.size());
    float* ds = device_alloc<float>(x.size() / 16 * sizeof(float));
    ok(cudaMemcpy(dx, x.data(), x.size() * sizeof(float), cudaMemcpyHostToDevice));
    const cuda::ActivationsQ8 xq{dq, ds};
    cuda::quantize_activations(dx, s.cols, kTokens, xq, stream);
    for (const int64_t tokens : {int64_t{1}, int64_t{2}, int64_t{8}}) {
      const double seconds = testing::median_launch_seconds(copies, stream, [&](int c) {
        const cuda::DeviceMatrix m{static_cast<uint32_t>(s.type), s.rows, s.cols, row_bytes, weights + c * matrix_bytes};
        cuda::matvec_int8(m, xq, dy, s.rows, nullptr, false, tokens, stream);
      });
      const double bandwidth = static_cast<double>(matrix_bytes) / seconds;
      std::printf("%-12s %-5s %6lld %6lld %3lld %9.2f %9.0f %5.0f%%\n", s.model, std::string(tensor_type_name(s.type)).c_str(),
                  static_cast<long long>(s.rows), static_cast<long long>(s.cols),
                  static_cast<long long>(tokens), seconds * 1e6, bandwidth / 1e9,
                  100.0 * bandwidth / copy_bandwidth);
    }
    std::vector<float> y(static_cast<size_t>(s.rows));
    ok(cudaMemcpy(y.data(), dy, y.size() * sizeof(float), cudaMemcpyDeviceToHost));
    for (float v : y) ASSERT_TRUE(std::isfinite(v));
    cudaFree(weights);
    cudaFree(dx);
    cudaFree(dy);
    cudaFree(dq);
    cudaFree(ds);
  }
  cudaStreamDestroy(stream);
}

#endif  // REALIZAR_HAVE_CUDA

}  // namespace
}  // namespace realizar
