// test_model_file.cpp -- lwNetworkSave / lwNetworkLoad: round trips, the
// architectures the loader accepts (nested Sequential, Activation fusion,
// Dropout, bare Linear), atomic saves, and one crafted file per way a file
// can be wrong, each a clear error naming the file and the problem.
#include <gtest/gtest.h>

#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "capi_testing.h"
#include "layerwise/layerwise.h"
#include "model_file_testing.h"

namespace {

using json = nlohmann::json;
using lwtest::safetensors_bytes;

bool mentions(const std::string &word) { return std::strstr(lwGetLastErrorMessage(), word.c_str()) != nullptr; }

class ModelFile : public ::testing::Test {
 public:
  void SetUp() override { ASSERT_EQ(lwCreate(&h, LW_DEVICE_CPU), LW_STATUS_SUCCESS); }
  void TearDown() override {
    for (auto n : nets) lwNetworkDestroy(n);
    lwDestroy(h);
  }
  lwNetwork_t make(std::vector<int64_t> sizes, std::vector<lwActivationMode_t> acts, std::vector<int> bias,
                   lwDataType_t dtype, uint64_t seed = 3) {
    lwNetwork_t n = nullptr;
    EXPECT_EQ(lwNetworkCreate(h, (int)acts.size(), sizes.data(), acts.data(), bias.data(), dtype, &n),
              LW_STATUS_SUCCESS);
    EXPECT_EQ(lwNetworkInitUniform(n, seed), LW_STATUS_SUCCESS);
    nets.push_back(n);
    return n;
  }
  lwNetwork_t load_bytes(const std::vector<char> &bytes, lwStatus_t expect) {
    lwNetwork_t n = nullptr;
    const lwStatus_t st = lwNetworkLoadFromMemory(h, bytes.data(), bytes.size(), "crafted.safetensors", &n);
    EXPECT_EQ(st, expect) << lwGetLastErrorMessage();
    if (n) nets.push_back(n);
    if (expect != LW_STATUS_SUCCESS) EXPECT_EQ(n, nullptr);
    return n;
  }
  lwHandle_t h = nullptr;
  std::vector<lwNetwork_t> nets;
  lwtest::TempDir dir;
};

// Parameters and architecture identical, byte for byte.
void expect_same_network(lwNetwork_t a, lwNetwork_t b) {
  int la, lb;
  ASSERT_EQ(lwNetworkGetLayerCount(a, &la), LW_STATUS_SUCCESS);
  ASSERT_EQ(lwNetworkGetLayerCount(b, &lb), LW_STATUS_SUCCESS);
  ASSERT_EQ(la, lb);
  std::vector<int64_t> sa(la + 1), sb(lb + 1);
  lwNetworkGetSizes(a, sa.data());
  lwNetworkGetSizes(b, sb.data());
  ASSERT_EQ(sa, sb);
  lwDataType_t da, db;
  lwNetworkGetDataType(a, &da);
  lwNetworkGetDataType(b, &db);
  ASSERT_EQ(da, db);
  const size_t elem = da == LW_FLOAT32 ? 4 : 8;
  for (int i = 0; i < la; ++i) {
    lwActivationMode_t aa, ab;
    lwNetworkGetActivation(a, i, &aa);
    lwNetworkGetActivation(b, i, &ab);
    EXPECT_EQ(aa, ab) << "layer " << i;
    void *wa, *ba, *wb, *bb;
    lwNetworkGetLayer(a, i, nullptr, &wa, nullptr, &ba);
    lwNetworkGetLayer(b, i, nullptr, &wb, nullptr, &bb);
    EXPECT_EQ(std::memcmp(wa, wb, sa[i] * sa[i + 1] * elem), 0) << "layer " << i;
    ASSERT_EQ(ba == nullptr, bb == nullptr);
    if (ba) EXPECT_EQ(std::memcmp(ba, bb, sa[i + 1] * elem), 0) << "layer " << i;
  }
}

TEST_F(ModelFile, RoundTripFloat32AndFloat64) {
  for (lwDataType_t dt : {LW_FLOAT32, LW_FLOAT64}) {
    lwNetwork_t net = make({5, 7, 1, 3},
                           {LW_ACTIVATION_SIGMOID, LW_ACTIVATION_RELU, LW_ACTIVATION_IDENTITY}, {1, 0, 1}, dt);
    const std::string path = dir.file("net.safetensors");
    LW_OK(lwNetworkSave(net, path.c_str()));
    lwNetwork_t back = nullptr;
    LW_OK(lwNetworkLoad(h, path.c_str(), &back));
    nets.push_back(back);
    expect_same_network(net, back);
    // The bytes in memory load the same way.
    const auto bytes = lwtest::read_file(path);
    EXPECT_EQ((8 + bytes[0]) % 8, 0);  // header padded: data 8-byte aligned
    expect_same_network(net, load_bytes(bytes, LW_STATUS_SUCCESS));
  }
}

TEST_F(ModelFile, SavedHeaderFollowsTheContract) {
  lwNetwork_t net = make({4, 3, 2}, {LW_ACTIVATION_TANH, LW_ACTIVATION_IDENTITY}, {1, 0}, LW_FLOAT32);
  const std::string path = dir.file("c.safetensors");
  LW_OK(lwNetworkSave(net, path.c_str()));
  const auto bytes = lwtest::read_file(path);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | (unsigned char)bytes[i];
  const json header = json::parse(std::string(bytes.begin() + 8, bytes.begin() + 8 + n));
  const json &meta = header["__metadata__"];
  EXPECT_EQ(meta["format"], "layerwise");
  EXPECT_EQ(meta["format_version"], "1");
  EXPECT_EQ(meta["dtype"], "float32");
  const json arch = json::parse(meta["architecture"].get<std::string>());
  EXPECT_EQ(arch, json::parse(R"({"type":"Sequential","modules":[
      {"type":"Linear","in_features":4,"out_features":3,"bias":true,"activation":"tanh"},
      {"type":"Linear","in_features":3,"out_features":2,"bias":false,"activation":"identity"}]})"));
  EXPECT_EQ(header["0.weight"]["dtype"], "F32");
  EXPECT_EQ(header["0.weight"]["shape"], json::parse("[3, 4]"));
  EXPECT_EQ(header["0.bias"]["shape"], json::parse("[3]"));
  EXPECT_EQ(header["1.weight"]["shape"], json::parse("[2, 3]"));
  EXPECT_FALSE(header.contains("1.bias"));
  EXPECT_EQ(bytes.size(), 8 + n + (12 + 3 + 6) * 4);
  // The data are the parameters, little-endian, C order.
  void *w;
  lwNetworkGetLayer(net, 1, nullptr, &w, nullptr, nullptr);
  const auto off = header["1.weight"]["data_offsets"][0].get<size_t>();
  EXPECT_EQ(std::memcmp(bytes.data() + 8 + n + off, w, 6 * 4), 0);
}

// A file assembled from parts: a header JSON and the data block.
struct Crafted {
  json header;
  std::vector<char> data;
  std::vector<char> bytes() const { return safetensors_bytes(header.dump(), data); }
};

// A valid two-layer float64 file of the given architecture with tensors in order.
Crafted crafted(const json &arch, const std::vector<std::pair<std::string, std::vector<uint64_t>>> &tensors,
                const std::string &dtype = "float64") {
  Crafted c;
  c.header["__metadata__"] = {{"format", "layerwise"}, {"format_version", "1"}, {"dtype", dtype},
                              {"architecture", arch.dump()}};
  const size_t elem = dtype == "float32" ? 4 : 8;
  uint64_t off = 0;
  for (const auto &t : tensors) {
    uint64_t count = 1;
    for (auto d : t.second) count *= d;
    c.header[t.first] = {{"dtype", elem == 4 ? "F32" : "F64"}, {"shape", t.second},
                         {"data_offsets", {off, off + count * elem}}};
    off += count * elem;
  }
  c.data.resize(off);
  for (size_t i = 0; i < off; ++i) c.data[i] = static_cast<char>(i * 37 % 251);  // arbitrary, finite-ish
  if (elem == 8)
    for (size_t i = 0; i < off / 8; ++i) {
      const double v = 0.01 * static_cast<double>(i % 17) - 0.05;
      std::memcpy(c.data.data() + 8 * i, &v, 8);
    }
  return c;
}

json linear(int in, int out, bool bias = true, const char *act = "sigmoid") {
  return {{"type", "Linear"}, {"in_features", in}, {"out_features", out}, {"bias", bias}, {"activation", act}};
}

Crafted two_layer() {
  const json arch = {{"type", "Sequential"}, {"modules", {linear(3, 4), linear(4, 2, true, "identity")}}};
  return crafted(arch, {{"0.weight", {4, 3}}, {"0.bias", {4}}, {"1.weight", {2, 4}}, {"1.bias", {2}}});
}

TEST_F(ModelFile, CraftedValidFileLoads) {
  lwNetwork_t n = load_bytes(two_layer().bytes(), LW_STATUS_SUCCESS);
  int64_t sizes[3];
  lwNetworkGetSizes(n, sizes);
  EXPECT_EQ(sizes[0], 3);
  EXPECT_EQ(sizes[1], 4);
  EXPECT_EQ(sizes[2], 2);
}

TEST_F(ModelFile, NestedSequentialActivationAndDropout) {
  // Linear(identity) + Activation(tanh) fuse; Dropout disappears; names follow the nesting.
  const json arch = {{"type", "Sequential"},
                     {"modules",
                      {{{"type", "Sequential"},
                        {"modules", {linear(3, 5, true, "identity"), {{"type", "Activation"}, {"mode", "tanh"}}}}},
                       {{"type", "Dropout"}, {"p", 0.5}, {"seed", 0}},
                       linear(5, 2, false, "sigmoid")}}};
  Crafted c = crafted(arch, {{"0.0.weight", {5, 3}}, {"0.0.bias", {5}}, {"2.weight", {2, 5}}});
  lwNetwork_t n = load_bytes(c.bytes(), LW_STATUS_SUCCESS);
  int L;
  lwNetworkGetLayerCount(n, &L);
  ASSERT_EQ(L, 2);
  lwActivationMode_t a0, a1;
  lwNetworkGetActivation(n, 0, &a0);
  lwNetworkGetActivation(n, 1, &a1);
  EXPECT_EQ(a0, LW_ACTIVATION_TANH);
  EXPECT_EQ(a1, LW_ACTIVATION_SIGMOID);
  void *b1;
  lwNetworkGetLayer(n, 1, nullptr, nullptr, nullptr, &b1);
  EXPECT_EQ(b1, nullptr);
}

TEST_F(ModelFile, BareLinear) {
  Crafted c = crafted(linear(3, 2, true, "relu"), {{"weight", {2, 3}}, {"bias", {2}}});
  lwNetwork_t n = load_bytes(c.bytes(), LW_STATUS_SUCCESS);
  void *w;
  lwNetworkGetLayer(n, 0, nullptr, &w, nullptr, nullptr);
  EXPECT_EQ(std::memcmp(w, c.data.data(), 6 * 8), 0);
}

TEST_F(ModelFile, UnsupportedModules) {
  const json rbm = {{"type", "Sequential"}, {"modules", {{{"type", "RBM"}, {"visible", 3}}}}};
  load_bytes(crafted(rbm, {}).bytes(), LW_STATUS_NOT_SUPPORTED);
  EXPECT_TRUE(mentions("RBM"));
  EXPECT_TRUE(mentions("crafted.safetensors"));
  // An Activation after a Linear that already has one cannot be fused.
  const json twice = {{"type", "Sequential"},
                      {"modules", {linear(3, 2, true, "sigmoid"), {{"type", "Activation"}, {"mode", "tanh"}}}}};
  load_bytes(crafted(twice, {{"0.weight", {2, 3}}, {"0.bias", {2}}}).bytes(), LW_STATUS_NOT_SUPPORTED);
  EXPECT_TRUE(mentions("fused"));
  const json first = {{"type", "Sequential"}, {"modules", {{{"type", "Activation"}, {"mode", "tanh"}}, linear(3, 2)}}};
  load_bytes(crafted(first, {{"1.weight", {2, 3}}, {"1.bias", {2}}}).bytes(), LW_STATUS_NOT_SUPPORTED);
  Crafted v = two_layer();
  v.header["__metadata__"]["format_version"] = "2";
  load_bytes(v.bytes(), LW_STATUS_NOT_SUPPORTED);
  EXPECT_TRUE(mentions("format_version"));
}

// Each mutation of a valid file is BAD_PARAM with a message containing `word`.
void expect_bad(ModelFile *t, const std::vector<char> &bytes, const std::string &word) {
  t->load_bytes(bytes, LW_STATUS_BAD_PARAM);
  EXPECT_TRUE(mentions(word)) << "message: " << lwGetLastErrorMessage() << " (wanted \"" << word << "\")";
  EXPECT_TRUE(mentions("crafted.safetensors")) << lwGetLastErrorMessage();
}

TEST_F(ModelFile, BrokenFramingIsBadParam) {
  const auto good = two_layer().bytes();
  expect_bad(this, {}, "too short");
  expect_bad(this, std::vector<char>(good.begin(), good.begin() + 5), "too short");
  auto huge = good;
  huge[7] = 0x7f;  // header length ~ 2^63
  expect_bad(this, huge, "cap");
  auto past = good;
  past[3] = 0x01;  // ~16 MB header in a small file
  expect_bad(this, past, "past the end");
  expect_bad(this, std::vector<char>(good.begin(), good.end() - 1), "truncated");
  auto trailing = good;
  trailing.push_back(0);
  expect_bad(this, trailing, "after the last tensor");
  expect_bad(this, safetensors_bytes("{\"__metadata__\": ", {}), "not valid JSON");
  expect_bad(this, safetensors_bytes("[1, 2]", {}), "not a JSON object");
  expect_bad(this, safetensors_bytes(std::string(10000, '[') + std::string(10000, ']'), {}), "nests deeper");
  expect_bad(this, safetensors_bytes("{}", {}), "__metadata__");
}

TEST_F(ModelFile, BrokenMetadataIsBadParam) {
  auto mutate = [&](auto f, const std::string &word) {
    Crafted c = two_layer();
    f(c);
    expect_bad(this, c.bytes(), word);
  };
  mutate([](Crafted &c) { c.header["__metadata__"]["format"] = "pytorch"; }, "format");
  mutate([](Crafted &c) { c.header["__metadata__"].erase("dtype"); }, "dtype");
  mutate([](Crafted &c) { c.header["__metadata__"]["dtype"] = "float16"; }, "float16");
  mutate([](Crafted &c) { c.header["__metadata__"]["extra"] = 5; }, "not a string");
  mutate([](Crafted &c) { c.header["__metadata__"]["architecture"] = "{\"type\": "; }, "architecture");
  mutate([](Crafted &c) {
    c.header["__metadata__"]["architecture"] = std::string(1000, '[') + std::string(1000, ']');
  }, "nests deeper");
  mutate([](Crafted &c) {
    c.header["__metadata__"]["architecture"] = json({{"type", "Sequential"}, {"modules", json::array()}}).dump();
  }, "no Linear");
  mutate([](Crafted &c) {
    c.header["__metadata__"]["architecture"] =
        json({{"type", "Sequential"}, {"modules", {linear(3, 4), linear(5, 2)}}}).dump();
  }, "does not match");
  mutate([](Crafted &c) {
    c.header["__metadata__"]["architecture"] = json(linear(3, -4)).dump();
  }, "out_features");
  mutate([](Crafted &c) {
    c.header["__metadata__"]["architecture"] = json(linear(3, 4, true, "swish")).dump();
  }, "swish");
  mutate([](Crafted &c) {
    json l = linear(3, 4);
    l["in_features"] = 1e300;
    c.header["__metadata__"]["architecture"] = json(l).dump();
  }, "in_features");
}

TEST_F(ModelFile, BrokenTensorsAreBadParam) {
  auto mutate = [&](auto f, const std::string &word) {
    Crafted c = two_layer();
    f(c);
    expect_bad(this, c.bytes(), word);
  };
  mutate([](Crafted &c) { c.header["0.weight"]["dtype"] = "F16"; }, "F16");
  mutate([](Crafted &c) { c.header["0.weight"]["dtype"] = "I64"; }, "I64");
  mutate([](Crafted &c) { c.header["0.weight"]["shape"] = {3, 4}; }, "shape");
  mutate([](Crafted &c) { c.header["0.bias"]["shape"] = {4, 1}; }, "shape");
  mutate([](Crafted &c) { c.header["1.bias"]["shape"] = {uint64_t{1} << 62}; }, "shape");
  mutate([](Crafted &c) { c.header.erase("1.bias"); }, "1.bias\" is missing");
  mutate([](Crafted &c) { c.header["2.weight"] = c.header["1.bias"]; }, "2.weight");
  mutate([](Crafted &c) { c.header["0.bias"]["data_offsets"] = {88, 120}; }, "overlap");
  mutate([](Crafted &c) {
    c.header["0.weight"]["data_offsets"] = {0, uint64_t{1} << 63};
  }, "bytes");
  mutate([](Crafted &c) { c.header["0.weight"]["data_offsets"] = {96, 0}; }, "end before");
  mutate([](Crafted &c) { c.header["0.weight"]["data_offsets"] = {-1, 95}; }, "data_offsets");
  mutate([](Crafted &c) { c.header["0.weight"].erase("data_offsets"); }, "data_offsets");
  mutate([](Crafted &c) { c.header["0.weight"] = 3; }, "not a JSON object");
  mutate([](Crafted &c) {
    // Swap the two biases' ranges: same sizes? No: 4 vs 2 elements, so the shapes disagree.
    std::swap(c.header["0.bias"]["data_offsets"], c.header["1.bias"]["data_offsets"]);
  }, "spans");
  mutate([](Crafted &c) {
    // A gap: move the last tensor one element further and grow the data to match.
    auto &off = c.header["1.bias"]["data_offsets"];
    off = {off[0].get<uint64_t>() + 8, off[1].get<uint64_t>() + 8};
    c.data.resize(c.data.size() + 8);
  }, "gap");
  // A bias present although the architecture says bias=false.
  const json arch = {{"type", "Sequential"}, {"modules", {linear(3, 2, false)}}};
  expect_bad(this, crafted(arch, {{"0.weight", {2, 3}}, {"0.bias", {2}}}).bytes(), "no bias");
}

TEST_F(ModelFile, LoadAndSaveValidateArguments) {
  lwNetwork_t n = reinterpret_cast<lwNetwork_t>(0x1);
  EXPECT_EQ(lwNetworkLoad(h, nullptr, &n), LW_STATUS_BAD_PARAM);
  EXPECT_EQ(n, nullptr);
  EXPECT_EQ(lwNetworkLoad(nullptr, "x", &n), LW_STATUS_BAD_PARAM);
  EXPECT_EQ(lwNetworkLoad(h, "x", nullptr), LW_STATUS_BAD_PARAM);
  EXPECT_EQ(lwNetworkLoadFromMemory(h, nullptr, 5, "m", &n), LW_STATUS_BAD_PARAM);
  const std::string missing = dir.file("does_not_exist.safetensors");
  EXPECT_EQ(lwNetworkLoad(h, missing.c_str(), &n), LW_STATUS_EXECUTION_FAILED);
  EXPECT_TRUE(mentions(missing));
  EXPECT_EQ(lwNetworkLoad(h, dir.path.c_str(), &n), LW_STATUS_BAD_PARAM);  // a directory
  EXPECT_TRUE(mentions("regular file"));
  lwNetwork_t net = make({2, 2}, {LW_ACTIVATION_IDENTITY}, {1}, LW_FLOAT32);
  EXPECT_EQ(lwNetworkSave(nullptr, "x"), LW_STATUS_BAD_PARAM);
  EXPECT_EQ(lwNetworkSave(net, nullptr), LW_STATUS_BAD_PARAM);
  EXPECT_EQ(lwNetworkSave(net, ""), LW_STATUS_BAD_PARAM);
  const std::string nodir = dir.file("no/such/dir/net.safetensors");
  EXPECT_EQ(lwNetworkSave(net, nodir.c_str()), LW_STATUS_EXECUTION_FAILED);
  EXPECT_TRUE(mentions(nodir));
}

TEST_F(ModelFile, FailedSaveLeavesThePreviousFileIntact) {
  lwNetwork_t small = make({2, 3}, {LW_ACTIVATION_SIGMOID}, {1}, LW_FLOAT32, 1);
  lwNetwork_t big = make({300, 300}, {LW_ACTIVATION_SIGMOID}, {1}, LW_FLOAT64, 2);
  const std::string path = dir.file("keep.safetensors");
  LW_OK(lwNetworkSave(small, path.c_str()));
  const auto before = lwtest::read_file(path);
  // A file-size limit makes the write of the big network fail half-way.
  struct rlimit old;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  signal(SIGXFSZ, SIG_IGN);
  struct rlimit lim = old;
  lim.rlim_cur = 4096;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &lim), 0);
  const lwStatus_t st = lwNetworkSave(big, path.c_str());
  setrlimit(RLIMIT_FSIZE, &old);
  signal(SIGXFSZ, SIG_DFL);
  EXPECT_EQ(st, LW_STATUS_EXECUTION_FAILED);
  EXPECT_TRUE(mentions("write failed")) << lwGetLastErrorMessage();
  EXPECT_EQ(lwtest::read_file(path), before);
  // No temporary file is left behind.
  std::vector<std::string> names;
  if (DIR *d = opendir(dir.path.c_str())) {
    while (dirent *e = readdir(d))
      if (std::strcmp(e->d_name, ".") && std::strcmp(e->d_name, "..")) names.push_back(e->d_name);
    closedir(d);
  }
  EXPECT_EQ(names, std::vector<std::string>{"keep.safetensors"});
  // A save that succeeds replaces the file.
  LW_OK(lwNetworkSave(big, path.c_str()));
  lwNetwork_t back = nullptr;
  LW_OK(lwNetworkLoad(h, path.c_str(), &back));
  nets.push_back(back);
  expect_same_network(big, back);
}

}  // namespace
