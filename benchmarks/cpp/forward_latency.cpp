// forward_latency.cpp -- the C++ contender of benchmarks/bench_inference.py:
//   forward_latency MODEL_FILE BATCH MIN_SECONDS
// loads a model file (lwNetworkLoad), warms lwNetworkForward up on BATCH random
// float32 inputs, then calls it until MIN_SECONDS have passed and prints
// `seconds_per_call: X` as its last line. Threads: OMP_NUM_THREADS (the
// library's thread-count variable), else every CPU the process may run on.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <random>
#include <string>
#include <vector>

#include <layerwise/layerwise.hpp>

int main(int argc, char **argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s MODEL_FILE BATCH MIN_SECONDS\n", argv[0]);
    return 2;
  }
  const long long batch = std::atoll(argv[2]);
  const double min_seconds = std::atof(argv[3]);
  if (batch < 1 || !(min_seconds > 0)) {
    std::fprintf(stderr, "%s: BATCH must be >= 1 and MIN_SECONDS > 0\n", argv[0]);
    return 2;
  }
  try {
    lw::Handle handle(LW_DEVICE_CPU);
    lw::Network net = lw::Network::load(handle, argv[1]);
    if (net.dtype() != LW_FLOAT32) {
      std::fprintf(stderr, "%s: expected a float32 network\n", argv[1]);
      return 1;
    }
    const auto sizes = net.sizes();
    std::vector<float> x(size_t(batch * sizes.front())), y(size_t(batch * sizes.back()));
    std::mt19937 gen(0);
    std::uniform_real_distribution<float> pixel(0.f, 1.f);
    for (auto &v : x) v = pixel(gen);
    using clock = std::chrono::steady_clock;
    // Warm-up: the workspace is allocated and the caches and thread pool are warm.
    const auto warm_until = clock::now() + std::chrono::duration<double>(0.1 * min_seconds);
    do net.forward(batch, x.data(), y.data()); while (clock::now() < warm_until);
    long long calls = 0;
    const auto start = clock::now();
    double elapsed = 0;
    do {
      net.forward(batch, x.data(), y.data());
      ++calls;
      elapsed = std::chrono::duration<double>(clock::now() - start).count();
    } while (elapsed < min_seconds);
    std::printf("calls: %lld\nseconds_per_call: %.9g\n", calls, elapsed / double(calls));
    return 0;
  } catch (const std::exception &e) {
    std::fprintf(stderr, "forward_latency: %s\n", e.what());
    return 1;
  }
}
