// test_hpp_split.cpp -- the C++ wrapper (layerwise.hpp) of the split training step:
// compute_gradients + apply_gradients through lw::Network equals train_step under
// Adam (the unfused path, so bitwise), and the flat buffer / output accessors
// point at the network's memory.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "layerwise/layerwise.hpp"

namespace {

TEST(HppSplit, ComputeApplyEqualsTrainStepAndExposesTheBuffers) {
  lw::Handle handle(LW_DEVICE_CPU);
  const std::vector<int64_t> sizes = {5, 4, 3};
  const std::vector<lwActivationMode_t> acts = {LW_ACTIVATION_SIGMOID, LW_ACTIVATION_IDENTITY};
  lw::Network a(handle, sizes, acts, {}, LW_FLOAT64), b(handle, sizes, acts, {}, LW_FLOAT64);
  a.init_uniform(7);
  b.init_uniform(7);
  const int64_t n = 6;
  std::mt19937 gen(1);
  std::normal_distribution<double> d;
  std::vector<double> x(size_t(n * sizes[0]));
  for (auto &v : x) v = d(gen);
  const std::vector<int32_t> y = {0, 1, 2, 2, 1, 0};
  lw::Optimizer adam_a(LW_OPTIMIZER_ADAM, lw::Optimizer::defaults(LW_OPTIMIZER_ADAM));
  lw::Optimizer adam_b(LW_OPTIMIZER_ADAM, lw::Optimizer::defaults(LW_OPTIMIZER_ADAM));
  for (int step = 0; step < 3; ++step) {
    const double la = a.train_step(n, x.data(), y.data(), LW_LOSS_SOFTMAX_CROSS_ENTROPY, adam_a);
    const double lb = b.compute_gradients(n, x.data(), y.data(), LW_LOSS_SOFTMAX_CROSS_ENTROPY);
    EXPECT_EQ(la, lb);
    const lw::Network::FlatGradients g = b.gradients();
    EXPECT_EQ(g.count, 5 * 4 + 4 + 4 * 3 + 3);
    ASSERT_NE(g.data, nullptr);
    ASSERT_NE(b.output(), nullptr);
    b.apply_gradients(adam_b);
  }
  for (int i = 0; i < 2; ++i) {
    const lw::Layer la = a.layer(i), lb = b.layer(i);
    const size_t wbytes = size_t(sizes[i] * sizes[i + 1]) * sizeof(double);
    EXPECT_EQ(std::memcmp(la.weight, lb.weight, wbytes), 0) << "layer " << i;
    EXPECT_EQ(std::memcmp(la.bias, lb.bias, size_t(sizes[i + 1]) * sizeof(double)), 0) << "layer " << i;
  }
  // Apply before any compute is a library error, thrown as lw::Error.
  lw::Network c(handle, sizes, acts, {}, LW_FLOAT64);
  EXPECT_THROW(c.apply_gradients(adam_a), lw::Error);
}

}  // namespace
