// The hardware floor of decode (DESIGN.md §4): the memory bandwidth the weights are read at,
// measured now on this machine, as the denominator of "decode bandwidth use".
#pragma once

#include <string>

#include "realizar/backend.h"

namespace realizar::bench {

struct Bandwidth {
  double bytes_per_second = 0;
  std::string method;  // how it was measured, for the report ("host read, 2 threads, 1 GiB")
};

// Where `backend` keeps its weights: CUDA device memory by a device-to-device copy of 1 GiB
// (bytes read plus written, engine's measure_copy_bandwidth); host memory otherwise by
// measure_host_read_bandwidth on `threads` threads (0: all cores).
Bandwidth measure_bandwidth(const Backend& backend, int threads);

// STREAM-like read bandwidth of host memory in bytes/s: `threads` threads each sum their share
// of a 1 GiB buffer (far beyond any CPU cache) with wide loads; best of 5 passes after one
// untimed pass. Decode reads weights and writes little, so reading is the floor it meets.
double measure_host_read_bandwidth(int threads);

}  // namespace realizar::bench
