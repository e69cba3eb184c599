// Asynchronous global-to-shared copies (cp.async, sm_80 and later; PTX ISA "cp.async"), shared by
// the kernels that stage their inputs in shared memory ahead of use (dequant_mma.cu,
// attention.cu, flash_attention.cu). A copy is issued, grouped by commit, and waited for by group.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace realizar::cuda {

// 16 bytes from `global` to `shared` (both 16-byte aligned), through L2 only.
__device__ __forceinline__ void cp_async16(void* shared, const void* global) {
  const auto address = static_cast<uint32_t>(__cvta_generic_to_shared(shared));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(address), "l"(global) : "memory");
}

// Closes the group of the copies issued since the last commit.
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }

// Waits until at most kPending of this thread's most recent groups are still in flight.
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(kPending) : "memory");
}

}  // namespace realizar::cuda
