// The CUDA backend's sampling of a step's output rows on the device (sample_rows,
// sampling_kernels.h): packs the rows' parameters and penalty windows into pinned memory, uploads
// them with the step, enqueues sample_rows on each pass of logits, and copies back token ids (and
// log-probabilities when asked). The parameters live at fixed device addresses, so a captured
// step graph serves any parameters.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "realizar/backend.h"

namespace realizar::cuda {

class DeviceSampler {
 public:
  // Rows of one step at most (`max_rows`), of which one sample_rows call takes `pass_rows`.
  DeviceSampler(int64_t vocab, int64_t max_rows, int64_t pass_rows);
  ~DeviceSampler();
  DeviceSampler(const DeviceSampler&) = delete;
  DeviceSampler& operator=(const DeviceSampler&) = delete;

  // Whether every row can be sampled on the device: top-k within sample_rows's cap (greedy rows
  // always) and a penalty window within the arrays' room per row.
  bool serves(std::span<const RowSampling> rows) const;
  static bool wants_logprobs(std::span<const RowSampling> rows);

  // Packs the rows of one step (at most max_rows) into the pinned staging area and enqueues their
  // upload on `stream`. The caller makes sure the previous step's upload is done (the staging is
  // reused). Throws realizar::Error for a parameter sample_rows cannot take.
  void upload(std::span<const RowSampling> rows, cudaStream_t stream);

  // Samples logits rows [0, count) (the step's output rows [first, first + count)) and enqueues the
  // copy of their results to pinned memory.
  void enqueue(const float* logits, int64_t first, int64_t count, bool logprobs, cudaStream_t stream);

  // After the stream has finished: the results of output rows [first, first + count) into
  // out[first, first + count); a row the device could not sample gets its error.
  void collect(int64_t first, int64_t count, bool logprobs, std::span<SampledToken> out) const;

 private:
  struct Buffers;
  int64_t vocab_, max_rows_, pass_rows_;
  std::unique_ptr<Buffers> b_;
};

}  // namespace realizar::cuda
