// rng.h -- counter-based uniform random numbers shared by the CPU and CUDA
// backends, so that a (seed, counter) pair gives the same draw on either device
// and with any number of threads. The generator is a keyed SplitMix64-style
// mixer (two rounds of the MurmurHash3/SplitMix64 finalizer): stateless, so an
// element's draw depends only on (seed, counter).
#pragma once

#include <cstdint>

#include "host_device.h"

namespace lw {

LW_HD uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// A 64-bit random word for element `counter` of stream `seed`.
LW_HD uint64_t random_bits(uint64_t seed, uint64_t counter) {
  const uint64_t key = mix64(seed + 0x9E3779B97F4A7C15ull);
  return mix64(key ^ mix64(counter * 0x9E3779B97F4A7C15ull + key));
}

// Uniform double in [0, 1) with 53 random bits.
LW_HD double uniform01(uint64_t seed, uint64_t counter) {
  return static_cast<double>(random_bits(seed, counter) >> 11) * 0x1.0p-53;
}

}  // namespace lw
