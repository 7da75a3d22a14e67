// fuzz_model_file.cpp -- fuzzing lwNetworkLoadFromMemory, the parser every
// model file goes through (lwNetworkLoad reads files with the same code).
//
// Built two ways:
//   - with clang and -DLAYERWISE_LIBFUZZER=ON as a libFuzzer target
//     (LLVMFuzzerTestOneInput below; run it with a corpus directory);
//   - otherwise as a plain program (ctest "model_file_fuzz") running a seeded
//     mutation loop: valid files (saved by lwNetworkSave and crafted nested
//     architectures) get bytes flipped, inserted, deleted, truncated, numbers in
//     the header replaced by extreme values, and pieces spliced between files.
// Every input must return a status without crashing or leaking (ASan + UBSan
// in CI); a load that succeeds must give a network whose forward pass runs.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "layerwise/layerwise.h"
#include "model_file_testing.h"

namespace {

lwHandle_t fuzz_handle() {
  static lwHandle_t h = [] {
    lwHandle_t handle = nullptr;
    if (lwCreate(&handle, LW_DEVICE_CPU) != LW_STATUS_SUCCESS) std::abort();
    lwSetNumThreads(handle, 1);
    return handle;
  }();
  return h;
}

// Loads one input; aborts on anything a valid implementation must never do.
void load_one(const uint8_t *data, size_t size) {
  lwNetwork_t net = nullptr;
  const lwStatus_t st = lwNetworkLoadFromMemory(fuzz_handle(), data, size, "fuzz", &net);
  if (st == LW_STATUS_SUCCESS) {
    int L = 0;
    lwNetworkGetLayerCount(net, &L);
    std::vector<int64_t> sizes(L + 1);
    lwNetworkGetSizes(net, sizes.data());
    lwDataType_t dt;
    lwNetworkGetDataType(net, &dt);
    const size_t elem = dt == LW_FLOAT32 ? 4 : 8;
    // Sizes come from a file no larger than the input, so these buffers stay small.
    std::vector<char> x(2 * sizes[0] * elem), y(2 * sizes[L] * elem);
    if (lwNetworkForward(net, 2, x.data(), y.data()) != LW_STATUS_SUCCESS) std::abort();
    lwNetworkDestroy(net);
    return;
  }
  if (net != nullptr) std::abort();  // a failed load returns no network
  if (st == LW_STATUS_INTERNAL_ERROR) {
    std::fprintf(stderr, "internal error: %s\n", lwGetLastErrorMessage());
    std::abort();
  }
  if (lwGetLastErrorMessage()[0] == '\0') std::abort();  // every failure says why
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  load_one(data, size);
  return 0;
}

#ifndef LAYERWISE_LIBFUZZER
namespace {

std::vector<char> saved_network(const lwtest::TempDir &dir, std::vector<int64_t> sizes,
                                std::vector<lwActivationMode_t> acts, std::vector<int> bias, lwDataType_t dt) {
  lwNetwork_t net;
  if (lwNetworkCreate(fuzz_handle(), (int)acts.size(), sizes.data(), acts.data(), bias.data(), dt, &net) ||
      lwNetworkInitUniform(net, 11))
    std::abort();
  const std::string path = dir.file("seed.safetensors");
  if (lwNetworkSave(net, path.c_str()) != LW_STATUS_SUCCESS) std::abort();
  lwNetworkDestroy(net);
  return lwtest::read_file(path);
}

// A nested architecture with Activation and Dropout, written by hand.
std::vector<char> nested_file() {
  const std::string arch =
      R"({\"type\":\"Sequential\",\"modules\":[{\"type\":\"Sequential\",\"modules\":[)"
      R"({\"type\":\"Linear\",\"in_features\":2,\"out_features\":3,\"bias\":true,\"activation\":\"identity\"},)"
      R"({\"type\":\"Activation\",\"mode\":\"tanh\"}]},{\"type\":\"Dropout\",\"p\":0.5,\"seed\":1},)"
      R"({\"type\":\"Linear\",\"in_features\":3,\"out_features\":1,\"bias\":false,\"activation\":\"sigmoid\"}]})";
  const std::string header =
      R"({"__metadata__":{"format":"layerwise","format_version":"1","dtype":"float32","architecture":")" + arch +
      R"("},"0.0.weight":{"dtype":"F32","shape":[3,2],"data_offsets":[0,24]},)"
      R"("0.0.bias":{"dtype":"F32","shape":[3],"data_offsets":[24,36]},)"
      R"("2.weight":{"dtype":"F32","shape":[1,3],"data_offsets":[36,48]}})";
  std::vector<char> data(48);
  for (size_t i = 0; i < 12; ++i) {
    const float v = 0.1f * static_cast<float>(i) - 0.5f;
    std::memcpy(data.data() + 4 * i, &v, 4);
  }
  return lwtest::safetensors_bytes(header, data);
}

std::vector<char> mutate(const std::vector<std::vector<char>> &seeds, std::mt19937_64 &rng) {
  std::vector<char> f = seeds[rng() % seeds.size()];
  const int rounds = 1 + static_cast<int>(rng() % 4);
  for (int r = 0; r < rounds && !f.empty(); ++r) {
    const size_t pos = rng() % f.size();
    switch (rng() % 7) {
      case 0:  // flip bits
        f[pos] = static_cast<char>(f[pos] ^ (1u << (rng() % 8)));
        break;
      case 1:  // random byte
        f[pos] = static_cast<char>(rng());
        break;
      case 2:  // insert bytes
        f.insert(f.begin() + pos, 1 + rng() % 8, static_cast<char>(rng()));
        break;
      case 3:  // delete a range
        f.erase(f.begin() + pos, f.begin() + std::min(f.size(), pos + 1 + rng() % 16));
        break;
      case 4:  // truncate
        f.resize(pos);
        break;
      case 5: {  // replace a run of digits with an extreme number
        static const char *const extremes[] = {"0", "1", "18446744073709551615", "9223372036854775808",
                                               "2147483648", "-1", "1e308", "4294967296"};
        size_t s = pos;
        while (s < f.size() && !(f[s] >= '0' && f[s] <= '9')) ++s;
        size_t e = s;
        while (e < f.size() && f[e] >= '0' && f[e] <= '9') ++e;
        if (s < 8 || s >= f.size()) break;  // keep the length prefix for this mutation
        const std::string x = extremes[rng() % 8];
        f.erase(f.begin() + s, f.begin() + e);
        f.insert(f.begin() + s, x.begin(), x.end());
        // Keep the length prefix consistent with the grown or shrunk header.
        uint64_t n = 0;
        for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(f[i]);
        n = n + x.size() - (e - s);
        for (int i = 0; i < 8; ++i) f[i] = static_cast<char>((n >> (8 * i)) & 0xff);
        break;
      }
      case 6: {  // splice a piece of another seed
        const auto &o = seeds[rng() % seeds.size()];
        const size_t from = rng() % o.size(), len = std::min(o.size() - from, size_t(1 + rng() % 32));
        f.insert(f.begin() + pos, o.begin() + from, o.begin() + from + len);
        break;
      }
    }
  }
  return f;
}

}  // namespace

int main(int argc, char **argv) {
  const long iterations = argc > 1 ? std::atol(argv[1]) : 20000;
  const unsigned long seed = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 20261201;
  lwtest::TempDir dir;
  std::vector<std::vector<char>> seeds = {
      saved_network(dir, {4, 3, 2}, {LW_ACTIVATION_SIGMOID, LW_ACTIVATION_IDENTITY}, {1, 1}, LW_FLOAT32),
      saved_network(dir, {3, 5, 1, 2}, {LW_ACTIVATION_TANH, LW_ACTIVATION_RELU, LW_ACTIVATION_SIGMOID}, {0, 1, 1},
                    LW_FLOAT64),
      nested_file()};
  for (const auto &s : seeds) {  // the seeds themselves are valid
    lwNetwork_t net = nullptr;
    if (lwNetworkLoadFromMemory(fuzz_handle(), s.data(), s.size(), "seed", &net) != LW_STATUS_SUCCESS) {
      std::fprintf(stderr, "seed does not load: %s\n", lwGetLastErrorMessage());
      return 1;
    }
    lwNetworkDestroy(net);
  }
  std::mt19937_64 rng(seed);
  long loaded = 0;
  for (long i = 0; i < iterations; ++i) {
    const std::vector<char> input = mutate(seeds, rng);
    lwNetwork_t probe = nullptr;
    load_one(reinterpret_cast<const uint8_t *>(input.data()), input.size());
    if (lwNetworkLoadFromMemory(fuzz_handle(), input.data(), input.size(), "fuzz", &probe) == LW_STATUS_SUCCESS) {
      ++loaded;
      lwNetworkDestroy(probe);
    }
  }
  std::printf("model_file_fuzz: %ld mutated files (seed %lu), %ld loaded, none crashed\n", iterations, seed, loaded);
  lwDestroy(fuzz_handle());
  return 0;
}
#endif
