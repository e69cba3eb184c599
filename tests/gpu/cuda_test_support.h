// Helpers shared by the CUDA kernel tests and benchmarks (tests/gpu). Include only where
// REALIZAR_HAVE_CUDA is defined.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include <cuda_runtime_api.h>

#include "backend/cuda/device_info.h"
#include "realizar/quant.h"
#include "realizar/tensor_type.h"

#define SKIP_WITHOUT_GPU() \
  if (realizar::cuda::list_devices().empty()) GTEST_SKIP() << "no CUDA device"

namespace realizar::testing {

// Device copy of a host vector; poisoned (NaN bytes) when created empty, so unwritten outputs show.
template <class T>
class DeviceVector {
 public:
  explicit DeviceVector(const std::vector<T>& host) : size_(host.size()) {
    EXPECT_EQ(cudaMalloc(&ptr_, bytes()), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(ptr_, host.data(), bytes(), cudaMemcpyHostToDevice), cudaSuccess);
  }
  explicit DeviceVector(size_t size) : size_(size) {
    EXPECT_EQ(cudaMalloc(&ptr_, bytes()), cudaSuccess);
    EXPECT_EQ(cudaMemset(ptr_, 0xFF, bytes()), cudaSuccess);
  }
  ~DeviceVector() { cudaFree(ptr_); }
  DeviceVector(const DeviceVector&) = delete;
  DeviceVector& operator=(const DeviceVector&) = delete;
  T* get() const { return static_cast<T*>(ptr_); }
  std::vector<T> read() const {
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_EQ(cudaGetLastError(), cudaSuccess);
    std::vector<T> host(size_);
    EXPECT_EQ(cudaMemcpy(host.data(), ptr_, bytes(), cudaMemcpyDeviceToHost), cudaSuccess);
    return host;
  }

 private:
  size_t bytes() const { return std::max<size_t>(size_ * sizeof(T), 1); }
  void* ptr_ = nullptr;
  size_t size_;
};

inline std::vector<float> random_floats(size_t n, std::mt19937_64& rng, float scale = 1.0f) {
  std::uniform_real_distribution<float> dist(-scale, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// The int8 blocks the kernels' activation quantizer must produce (kernels.h, ActivationsQ8):
// d = max|x| / 127, q = round-half-even(x * (1 / d)), in float32 like the device.
struct HostQ8 {
  std::vector<int8_t> q;
  std::vector<float> ds;  // {d, d * sum(q)} per block
  std::vector<double> values;  // d * q
};

inline HostQ8 quantize_q8_on_host(const std::vector<float>& x) {
  HostQ8 h;
  h.q.resize(x.size());
  h.values.resize(x.size());
  for (size_t b = 0; b < x.size() / 32; ++b) {
    float amax = 0.0f;
    for (size_t i = 0; i < 32; ++i) amax = std::max(amax, std::abs(x[32 * b + i]));
    const float d = amax / 127.0f;
    const float inverse = d > 0.0f ? 1.0f / d : 0.0f;
    int sum = 0;
    for (size_t i = 0; i < 32; ++i) {
      const int q = std::clamp(static_cast<int>(std::nearbyint(x[32 * b + i] * inverse)), -127, 127);
      h.q[32 * b + i] = static_cast<int8_t>(q);
      h.values[32 * b + i] = static_cast<double>(d) * q;
      sum += q;
    }
    h.ds.push_back(d);
    h.ds.push_back(d * static_cast<float>(sum));
  }
  return h;
}

// The int8 blocks a fused kernel wrote next to its float output must be those that
// quantize_activations' scheme gives for that output, bit for bit.
inline void expect_q8_of(const std::vector<float>& out, const DeviceVector<int8_t>& q,
                  const DeviceVector<float>& ds) {
  const HostQ8 expected = quantize_q8_on_host(out);
  EXPECT_EQ(q.read(), expected.q);
  EXPECT_EQ(ds.read(), expected.ds);
}

// The float16 copy (InputCopy::half) of a kernel's output: each value rounded to nearest, as the
// host's float16 encoder does.
inline void expect_half_of(const std::vector<float>& out, const DeviceVector<uint16_t>& half) {
  std::vector<uint16_t> expected(out.size());
  quantize_row(TensorType::F16, out.data(), expected.data(), static_cast<int64_t>(out.size()));
  EXPECT_EQ(half.read(), expected);
}

// Median time of one launch, in seconds: `enqueue(c)` for c < copies (each launch on its own copy
// of the weights, together larger than L2, so that each reads them from DRAM) captured in one
// CUDA graph, replayed 20 times after 3 warm-up replays, each replay timed with events.
template <class F>
double median_launch_seconds(int copies, cudaStream_t stream, F&& enqueue) {
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  EXPECT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  for (int c = 0; c < copies; ++c) enqueue(c);
  EXPECT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
  EXPECT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  for (int i = 0; i < 3; ++i) cudaGraphLaunch(exec, stream);
  std::vector<double> times;
  for (int i = 0; i < 20; ++i) {
    cudaEventRecord(start, stream);
    cudaGraphLaunch(exec, stream);
    cudaEventRecord(stop, stream);
    cudaEventSynchronize(stop);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    times.push_back(ms * 1e-3 / copies);
  }
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

}  // namespace realizar::testing
