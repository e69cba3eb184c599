// Philox4x32-10, the counter-based random number generator of Salmon, Moraes, Dror and Shaw,
// "Parallel random numbers: as easy as 1, 2, 3" (SC'11), as Random123 and cuRAND define it. A draw
// is a pure function of (key, counter): the sampler keys it by the request's seed and counts by
// the token position, so a seeded request draws the same numbers on the host and on the GPU,
// whatever else shares its batch. Plain C++ usable from CUDA code (no library, no state).
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define REALIZAR_HOST_DEVICE __host__ __device__
#else
#define REALIZAR_HOST_DEVICE
#endif

namespace realizar {

struct Philox4x32 {
  uint32_t v[4];
};

// The 10-round block function: four 32-bit outputs of counter `c` under key `k`.
REALIZAR_HOST_DEVICE inline Philox4x32 philox4x32_10(Philox4x32 c, uint32_t k0, uint32_t k1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;  // round multipliers
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;  // Weyl key increments
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += kW0;
      k1 += kW1;
    }
    const uint64_t p0 = static_cast<uint64_t>(kM0) * c.v[0];
    const uint64_t p1 = static_cast<uint64_t>(kM1) * c.v[2];
    c = Philox4x32{{static_cast<uint32_t>(p1 >> 32) ^ c.v[1] ^ k0, static_cast<uint32_t>(p1),
                    static_cast<uint32_t>(p0 >> 32) ^ c.v[3] ^ k1, static_cast<uint32_t>(p0)}};
  }
  return c;
}

// The uniform number in [0, 1) of draw `draw` for the token at `position` of a request seeded
// with `seed`: 53 random bits of philox4x32_10(counter = (position, draw), key = seed), exact in
// a double. The sampler makes draw 0 at each position; other draws serve tests that need many
// numbers at one position.
REALIZAR_HOST_DEVICE inline double sampling_uniform(uint64_t seed, int64_t position, uint32_t draw) {
  const auto p = static_cast<uint64_t>(position);
  const Philox4x32 bits = philox4x32_10(
      Philox4x32{{static_cast<uint32_t>(p), static_cast<uint32_t>(p >> 32), draw, 0u}},
      static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  const uint64_t word = (static_cast<uint64_t>(bits.v[0]) << 32) | bits.v[1];
  return static_cast<double>(word >> 11) * 0x1.0p-53;
}

}  // namespace realizar
