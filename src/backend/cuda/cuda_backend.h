// The CUDA backend (DESIGN.md §1): the reference backend's function computed on one NVIDIA GPU.
// Weights stay in their GGUF block layout in device memory (uploaded once at load); keys and
// values live in a paged float16 cache; activations are float32. Batches of up to 8 tokens use
// matrix-vector kernels that read each weight byte once (int8 activations); batches of 9-64
// tokens multiply float16 activations with the quantized weights on the tensor cores, turning
// them into float16 in registers; larger batches dequantize each weight matrix to float16 and
// multiply with cuBLAS. Greedy picks are made on the device (sample() with plain greedy rows), so
// such a decode step returns token ids only. Decode steps of up to 64 tokens are replayed from captured CUDA graphs
// (set REALIZAR_CUDA_GRAPHS=0 to launch kernels one by one).
#pragma once

#include <memory>

#include "realizar/backend.h"

namespace realizar {

// options.cache_slots: KV cache storage in token slots, over all sequences (float16);
// options.max_sequence_length bounds the block tables of a step. Uses CUDA device 0.
// Throws realizar::Error when no CUDA device is present, a weight type is not supported (F32,
// F16, BF16, Q4_0, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K are), head_dim is not a multiple of 8 up to 128,
// more than 8 query heads share a KV head, or device memory runs out.
std::unique_ptr<Backend> make_cuda_backend(const ModelConfig& config, const ModelWeights& weights,
                                           const BackendOptions& options);

// Whether a CUDA device is present (false when the driver or device is missing).
bool cuda_device_available();

// Device-to-device copy bandwidth in bytes/s, bytes read plus written (METHOD.md).
double cuda_copy_bandwidth();

}  // namespace realizar
