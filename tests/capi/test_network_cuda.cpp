// test_network_cuda.cpp -- lwNetwork_t on CUDA handles against CPU handles:
// load from the same file bytes, forward, training steps (fused SGD and Adam),
// the input gradient, saving device parameters, and the split step (ComputeGradients,
// the flat gradient buffer changed in place, ApplyGradients, output and state views).
// Skips without a GPU (and compiles to a skip in builds without the CUDA runtime).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "capi_testing.h"
#include "layerwise/layerwise.h"
#include "model_file_testing.h"

#if defined(LAYERWISE_BUILD_WITH_CUDA)
#include <cuda_runtime.h>
#define LW_TEST_CUDART 1
#else
#define LW_TEST_CUDART 0
#endif

namespace {

#if LW_TEST_CUDART
struct DeviceArray {
  void *p = nullptr;
  size_t bytes = 0;
  explicit DeviceArray(size_t b) : bytes(b) { EXPECT_EQ(cudaMalloc(&p, b), cudaSuccess); }
  ~DeviceArray() { cudaFree(p); }
  void upload(const void *h) { EXPECT_EQ(cudaMemcpy(p, h, bytes, cudaMemcpyHostToDevice), cudaSuccess); }
  void download(void *h) const { EXPECT_EQ(cudaMemcpy(h, p, bytes, cudaMemcpyDeviceToHost), cudaSuccess); }
};

const int64_t kSizes[] = {9, 17, 6, 4};
const lwActivationMode_t kActs[] = {LW_ACTIVATION_SIGMOID, LW_ACTIVATION_TANH, LW_ACTIVATION_IDENTITY};
const int kBias[] = {1, 0, 1};

std::vector<double> layer_on_host(lwNetwork_t net, int i, bool device) {
  void *w, *b;
  lwNetworkGetLayer(net, i, nullptr, &w, nullptr, &b);
  std::vector<double> out(kSizes[i] * kSizes[i + 1] + (b ? kSizes[i + 1] : 0));
  const size_t wbytes = kSizes[i] * kSizes[i + 1] * 8;
  if (device) {
    cudaMemcpy(out.data(), w, wbytes, cudaMemcpyDeviceToHost);
    if (b) cudaMemcpy(out.data() + kSizes[i] * kSizes[i + 1], b, kSizes[i + 1] * 8, cudaMemcpyDeviceToHost);
  } else {
    std::memcpy(out.data(), w, wbytes);
    if (b) std::memcpy(out.data() + kSizes[i] * kSizes[i + 1], b, kSizes[i + 1] * 8);
  }
  return out;
}

TEST(NetworkCuda, MatchesCpu) {
  if (lwCudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  lwHandle_t cpu, gpu;
  LW_OK(lwCreate(&cpu, LW_DEVICE_CPU));
  LW_OK(lwCreate(&gpu, LW_DEVICE_CUDA));
  lwNetwork_t src;
  LW_OK(lwNetworkCreate(cpu, 3, kSizes, kActs, kBias, LW_FLOAT64, &src));
  LW_OK(lwNetworkInitUniform(src, 5));
  lwtest::TempDir dir;
  const std::string path = dir.file("n.safetensors");
  LW_OK(lwNetworkSave(src, path.c_str()));
  lwNetwork_t a, g;
  LW_OK(lwNetworkLoad(cpu, path.c_str(), &a));
  LW_OK(lwNetworkLoad(gpu, path.c_str(), &g));
  for (int i = 0; i < 3; ++i) EXPECT_EQ(layer_on_host(a, i, false), layer_on_host(g, i, true));
  // InitUniform gives the same draws on the device.
  lwNetwork_t g2;
  LW_OK(lwNetworkCreate(gpu, 3, kSizes, kActs, kBias, LW_FLOAT64, &g2));
  LW_OK(lwNetworkInitUniform(g2, 5));
  for (int i = 0; i < 3; ++i) EXPECT_EQ(layer_on_host(src, i, false), layer_on_host(g2, i, true));

  const int64_t n = 37;
  std::mt19937 gen(1);
  std::normal_distribution<double> d;
  std::vector<double> x(n * kSizes[0]), y_cpu(n * kSizes[3]), y_gpu(n * kSizes[3]);
  for (auto &v : x) v = d(gen);
  std::vector<int32_t> lab(n);
  for (auto &v : lab) v = gen() % kSizes[3];
  DeviceArray dx(x.size() * 8), dy(y_gpu.size() * 8), dlab(lab.size() * 4);
  dx.upload(x.data());
  dlab.upload(lab.data());
  LW_OK(lwNetworkForward(a, n, x.data(), y_cpu.data()));
  LW_OK(lwNetworkForward(g, n, dx.p, dy.p));
  dy.download(y_gpu.data());
  for (size_t k = 0; k < y_cpu.size(); ++k) EXPECT_NEAR(y_cpu[k], y_gpu[k], 1e-12);

  for (lwOptimizerMode_t mode : {LW_OPTIMIZER_SGD, LW_OPTIMIZER_ADAM}) {
    lwOptimizerDescriptor_t oc, og;
    lwOptimizerParams_t p;
    lwOptimizerParamsDefault(mode, &p);
    p.lr = 0.05;
    if (mode == LW_OPTIMIZER_SGD) p.momentum = 0.9;
    lwCreateOptimizerDescriptor(&oc);
    lwCreateOptimizerDescriptor(&og);
    lwSetOptimizerDescriptor(oc, mode, &p);
    lwSetOptimizerDescriptor(og, mode, &p);
    LW_OK(lwNetworkSetOption(a, LW_NETWORK_INPUT_GRADIENT, 1));
    LW_OK(lwNetworkSetOption(g, LW_NETWORK_INPUT_GRADIENT, 1));
    for (int step = 0; step < 3; ++step) {
      double lc, lg;
      LW_OK(lwNetworkTrainStep(a, n, x.data(), lab.data(), LW_LOSS_SOFTMAX_CROSS_ENTROPY, oc, &lc));
      LW_OK(lwNetworkTrainStep(g, n, dx.p, dlab.p, LW_LOSS_SOFTMAX_CROSS_ENTROPY, og, &lg));
      EXPECT_NEAR(lc, lg, 1e-12);
    }
    for (int i = 0; i < 3; ++i) {
      const auto hc = layer_on_host(a, i, false), hg = layer_on_host(g, i, true);
      for (size_t k = 0; k < hc.size(); ++k) EXPECT_NEAR(hc[k], hg[k], 1e-10) << "layer " << i;
    }
    const void *gc, *gg;
    LW_OK(lwNetworkGetInputGradient(a, nullptr, &gc));
    LW_OK(lwNetworkGetInputGradient(g, nullptr, &gg));
    std::vector<double> hg(n * kSizes[0]);
    cudaMemcpy(hg.data(), gg, hg.size() * 8, cudaMemcpyDeviceToHost);
    for (size_t k = 0; k < hg.size(); ++k) EXPECT_NEAR(static_cast<const double *>(gc)[k], hg[k], 1e-12);
    lwDestroyOptimizerDescriptor(oc);
    lwDestroyOptimizerDescriptor(og);
  }
  // Saving device parameters writes what the device holds.
  const std::string out = dir.file("g.safetensors");
  LW_OK(lwNetworkSave(g, out.c_str()));
  lwNetwork_t back;
  LW_OK(lwNetworkLoad(cpu, out.c_str(), &back));
  for (int i = 0; i < 3; ++i) EXPECT_EQ(layer_on_host(back, i, false), layer_on_host(g, i, true));
  for (auto net : {src, a, g, g2, back}) lwNetworkDestroy(net);
  lwDestroy(gpu);
  lwDestroy(cpu);
}

// The split step on the device: ComputeGradients' flat buffer, the output view and the
// optimizer-state pointers live in device memory and agree with a CPU network.
TEST(NetworkCuda, SplitStepMatchesCpu) {
  if (lwCudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  lwHandle_t cpu, gpu;
  LW_OK(lwCreate(&cpu, LW_DEVICE_CPU));
  LW_OK(lwCreate(&gpu, LW_DEVICE_CUDA));
  lwNetwork_t a, g;
  LW_OK(lwNetworkCreate(cpu, 3, kSizes, kActs, kBias, LW_FLOAT64, &a));
  LW_OK(lwNetworkCreate(gpu, 3, kSizes, kActs, kBias, LW_FLOAT64, &g));
  LW_OK(lwNetworkInitUniform(a, 9));
  LW_OK(lwNetworkInitUniform(g, 9));
  const int64_t n = 21;
  std::mt19937 gen(4);
  std::normal_distribution<double> d;
  std::vector<double> x(n * kSizes[0]);
  for (auto &v : x) v = d(gen);
  std::vector<int32_t> lab(n);
  for (auto &v : lab) v = gen() % kSizes[3];
  DeviceArray dx(x.size() * 8), dlab(lab.size() * 4);
  dx.upload(x.data());
  dlab.upload(lab.data());
  lwOptimizerDescriptor_t oc, og;
  lwOptimizerParams_t p;
  lwOptimizerParamsDefault(LW_OPTIMIZER_ADAM, &p);
  p.lr = 0.01;
  lwCreateOptimizerDescriptor(&oc);
  lwCreateOptimizerDescriptor(&og);
  lwSetOptimizerDescriptor(oc, LW_OPTIMIZER_ADAM, &p);
  lwSetOptimizerDescriptor(og, LW_OPTIMIZER_ADAM, &p);
  for (int step = 0; step < 3; ++step) {
    double lc, lg;
    LW_OK(lwNetworkComputeGradients(a, n, x.data(), lab.data(), LW_LOSS_SOFTMAX_CROSS_ENTROPY, &lc));
    LW_OK(lwNetworkComputeGradients(g, n, dx.p, dlab.p, LW_LOSS_SOFTMAX_CROSS_ENTROPY, &lg));
    EXPECT_NEAR(lc, lg, 1e-12);
    void *fc, *fg;
    int64_t cc, cg;
    LW_OK(lwNetworkGetGradients(a, nullptr, &fc, &cc));
    LW_OK(lwNetworkGetGradients(g, nullptr, &fg, &cg));
    ASSERT_EQ(cc, cg);
    std::vector<double> hg(cg);
    ASSERT_EQ(cudaMemcpy(hg.data(), fg, cg * 8, cudaMemcpyDeviceToHost), cudaSuccess);
    for (int64_t k = 0; k < cc; ++k) EXPECT_NEAR(static_cast<double *>(fc)[k], hg[k], 1e-12) << k;
    // An in-place change on the device (halving, as an average would) is what the update uses.
    for (int64_t k = 0; k < cc; ++k) {
      static_cast<double *>(fc)[k] *= 0.5;
      hg[k] *= 0.5;
    }
    ASSERT_EQ(cudaMemcpy(fg, hg.data(), cg * 8, cudaMemcpyHostToDevice), cudaSuccess);
    const void *yc, *yg;
    LW_OK(lwNetworkGetOutput(a, nullptr, &yc));
    LW_OK(lwNetworkGetOutput(g, nullptr, &yg));
    std::vector<double> hy(n * kSizes[3]);
    ASSERT_EQ(cudaMemcpy(hy.data(), yg, hy.size() * 8, cudaMemcpyDeviceToHost), cudaSuccess);
    for (size_t k = 0; k < hy.size(); ++k) EXPECT_NEAR(static_cast<const double *>(yc)[k], hy[k], 1e-12);
    LW_OK(lwNetworkApplyGradients(a, oc));
    LW_OK(lwNetworkApplyGradients(g, og));
  }
  for (int i = 0; i < 3; ++i) {
    const auto hc = layer_on_host(a, i, false), hd = layer_on_host(g, i, true);
    for (size_t k = 0; k < hc.size(); ++k) EXPECT_NEAR(hc[k], hd[k], 1e-10) << "layer " << i;
  }
  void *mc, *mg;
  LW_OK(lwNetworkGetOptimizerState(a, 0, 0, 1, nullptr, &mc));
  LW_OK(lwNetworkGetOptimizerState(g, 0, 0, 1, nullptr, &mg));
  std::vector<double> hm(kSizes[0] * kSizes[1]);
  ASSERT_EQ(cudaMemcpy(hm.data(), mg, hm.size() * 8, cudaMemcpyDeviceToHost), cudaSuccess);
  for (size_t k = 0; k < hm.size(); ++k) EXPECT_NEAR(static_cast<double *>(mc)[k], hm[k], 1e-14);
  lwDestroyOptimizerDescriptor(oc);
  lwDestroyOptimizerDescriptor(og);
  lwNetworkDestroy(a);
  lwNetworkDestroy(g);
  lwDestroy(gpu);
  lwDestroy(cpu);
}
#else
TEST(NetworkCuda, MatchesCpu) { GTEST_SKIP() << "built without the CUDA runtime"; }
TEST(NetworkCuda, SplitStepMatchesCpu) { GTEST_SKIP() << "built without the CUDA runtime"; }
#endif

}  // namespace
