// Kernel launches with programmatic dependent launch (PDL, CUDA 11.8+, sm_90; CUDA programming
// guide, "Programmatic Dependent Launch and Synchronization"). A kernel launched this way may be
// scheduled while the previous kernel of the stream is still running: its CTAs take free SM slots
// and do work that needs nothing from earlier kernels (a matvec loads its first weights), then wait
// at wait_for_previous_kernel() until the previous grid has completed and its writes are visible.
// Decode steps are chains of a few hundred small kernels, so this hides most of the launch gap
// between them.
//
// Contract for every kernel launched by `launch`: call wait_for_previous_kernel() before the
// first read or write of memory that another kernel of the step writes or reads (activations,
// KV cache, logits); weights are read-only and may be read before, and so may the step's inputs
// (tokens, positions, slots, block tables: copied from the host before the step's first kernel,
// written by no kernel). Since each kernel waits for the completion of the previous one, which
// itself waited, completion stays ordered along the whole stream.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>
#include <utility>

namespace realizar::cuda {

__device__ __forceinline__ void wait_for_previous_kernel() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Lets the next kernel of the stream be scheduled once every CTA of this grid has called it (or
// exited). Called right after wait_for_previous_kernel(), so at most one kernel waits ahead:
// calling it first in the one-CTA kernels (RMSNorm, RoPE) was 2-4 % faster on one-token steps,
// but then a kernel starts while the one two before it still runs, and cuda_backend_test got
// wrong logits (most likely stale L1 lines of a reused activation buffer read through the
// non-coherent path; docs/perf-notes.md, "Small kernels allowing the next one first").
__device__ __forceinline__ void allow_next_kernel() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

// Both, for kernels with nothing to do before their inputs are ready.
__device__ __forceinline__ void wait_then_allow_next_kernel() {
  wait_for_previous_kernel();
  allow_next_kernel();
}

// Host: throws realizar::Error naming the kernel and the CUDA error when `status` is not
// cudaSuccess (launch_errors.cpp).
void check_launch(cudaError_t status, const char* kernel);

// Host: throws realizar::Error for a case a launcher does not handle ("LAUNCHER: no kernel for
// WHAT VALUE"), instead of enqueuing nothing.
[[noreturn]] void unhandled_case(const char* launcher, const char* what, long long value);

// kernel<<<grid, block, shared_bytes, stream>>>(args...) with the PDL attribute: `shared_bytes` of
// dynamic shared memory (over 48 KiB needs the kernel's cudaFuncAttributeMaxDynamicSharedMemorySize
// raised first). Returns the launch's error, which the caller checks (check_launch) or returns.
template <class... Params, class... Args>
[[nodiscard]] cudaError_t launch_with_shared(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes,
                                             cudaStream_t stream, Args&&... args) {
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = shared_bytes;
  config.stream = stream;
  config.attrs = &attribute;
  config.numAttrs = 1;
  return cudaLaunchKernelEx(&config, kernel, static_cast<Params>(args)...);
}

// Raises kKernel's dynamic shared memory limit to `bytes` (over 48 KiB needs it), once per process
// and kernel (the backend uses device 0 only); `bytes` must be the same at every call. The call is
// not stream-ordered but may synchronize, which a thread capturing a graph in thread-local mode
// may not do: it is made in relaxed capture mode. Returns the error of the first call.
template <auto kKernel>
cudaError_t allow_dynamic_shared_bytes(size_t bytes) {
  static const cudaError_t status = [bytes] {
    cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
    cudaThreadExchangeStreamCaptureMode(&mode);
    const cudaError_t set =
        cudaFuncSetAttribute(kKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
    cudaThreadExchangeStreamCaptureMode(&mode);
    return set;
  }();
  return status;
}

// kernel<<<grid, block, 0, stream>>>(args...) with the PDL attribute. Returns the launch's error,
// which the caller checks (check_launch) or returns.
template <class... Params, class... Args>
[[nodiscard]] cudaError_t launch(void (*kernel)(Params...), dim3 grid, dim3 block, cudaStream_t stream, Args&&... args) {
  return launch_with_shared(kernel, grid, block, 0, stream, std::forward<Args>(args)...);
}

template <class F, int... kCounts>
void with_count_impl(int64_t n, F& f, std::integer_sequence<int, kCounts...>) {
  ((n == kCounts + 1 ? f(std::integral_constant<int, kCounts + 1>{}) : void()), ...);
}

// f(std::integral_constant<int, n>{}) for 1 <= n <= kMax (nothing otherwise): a token count known
// at run time as a kernel template argument.
template <int kMax, class F>
void with_count(int64_t n, F&& f) {
  with_count_impl(n, f, std::make_integer_sequence<int, kMax>{});
}

// f(std::integral_constant<int, kDim>{}) for the attention kernels' padded head width: head_dim
// rounded up to a multiple of 32, one of 32, 64, 96, 128. Throws realizar::Error naming `launcher`
// for any other head_dim (unhandled_case).
template <class F>
void with_padded_head_dim(int head_dim, const char* launcher, F&& f) {
  switch ((head_dim + 31) / 32) {
    case 1: return f(std::integral_constant<int, 32>{});
    case 2: return f(std::integral_constant<int, 64>{});
    case 3: return f(std::integral_constant<int, 96>{});
    case 4: return f(std::integral_constant<int, 128>{});
    default: unhandled_case(launcher, "head_dim", head_dim);
  }
}

}  // namespace realizar::cuda
