// test_network_split.cpp -- the training step in three parts: lwNetworkComputeGradients,
// lwNetworkGetGradients, lwNetworkApplyGradients equal lwNetworkTrainStep bitwise for
// every unfused case (and fused SGD within its documented rounding), the flat gradient
// layout, the output view, the optimizer-state views, and argument validation.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "capi_testing.h"
#include "layerwise/layerwise.h"

namespace {

const int64_t kSizes[] = {7, 11, 5, 3};
const lwActivationMode_t kActs[] = {LW_ACTIVATION_SIGMOID, LW_ACTIVATION_RELU, LW_ACTIVATION_IDENTITY};
const int kBias[] = {1, 0, 1};
constexpr int kLayers = 3;

struct Opt {
  lwOptimizerDescriptor_t d = nullptr;
  explicit Opt(lwOptimizerMode_t mode, void (*tweak)(lwOptimizerParams_t &) = nullptr) {
    lwCreateOptimizerDescriptor(&d);
    lwOptimizerParams_t p;
    lwOptimizerParamsDefault(mode, &p);
    p.lr = 0.05;
    if (tweak) tweak(p);
    EXPECT_EQ(lwSetOptimizerDescriptor(d, mode, &p), LW_STATUS_SUCCESS) << lwGetLastErrorMessage();
  }
  ~Opt() { lwDestroyOptimizerDescriptor(d); }
};

struct Case {
  const char *name;
  lwOptimizerMode_t mode;
  void (*tweak)(lwOptimizerParams_t &);
};

const Case kCases[] = {
    {"sgd_momentum_nesterov_wd", LW_OPTIMIZER_SGD,
     [](lwOptimizerParams_t &p) { p.momentum = 0.9, p.nesterov = 1, p.weight_decay = 1e-3; }},
    {"adam", LW_OPTIMIZER_ADAM, [](lwOptimizerParams_t &p) { p.weight_decay = 1e-2; }},
    {"adamw", LW_OPTIMIZER_ADAMW, nullptr},
    {"rmsprop_centered_momentum", LW_OPTIMIZER_RMSPROP,
     [](lwOptimizerParams_t &p) { p.lr = 0.01, p.momentum = 0.5, p.centered = 1; }},
    {"adagrad", LW_OPTIMIZER_ADAGRAD, [](lwOptimizerParams_t &p) { p.initial_accumulator_value = 0.1, p.lr_decay = 0.01; }},
};

class NetworkSplit : public lw_test::CpuHandleTest {
 protected:
  void TearDown() override {
    for (auto n : nets) lwNetworkDestroy(n);
    CpuHandleTest::TearDown();
  }
  lwNetwork_t make(lwDataType_t dt) {
    lwNetwork_t n = nullptr;
    EXPECT_EQ(lwNetworkCreate(h, kLayers, kSizes, kActs, kBias, dt, &n), LW_STATUS_SUCCESS);
    EXPECT_EQ(lwNetworkInitUniform(n, 11), LW_STATUS_SUCCESS);
    nets.push_back(n);
    return n;
  }
  std::vector<lwNetwork_t> nets;
};

template <typename T>
std::vector<T> batch(int64_t n, int64_t cols, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> d;
  std::vector<T> v(n * cols);
  for (auto &x : v) x = static_cast<T>(d(gen));
  return v;
}

std::vector<int32_t> labels(int64_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::vector<int32_t> v(n);
  for (auto &x : v) x = static_cast<int32_t>(gen() % kSizes[kLayers]);
  return v;
}

int64_t param_count() {
  int64_t c = 0;
  for (int i = 0; i < kLayers; ++i) c += kSizes[i] * kSizes[i + 1] + (kBias[i] ? kSizes[i + 1] : 0);
  return c;
}

// Every parameter, in the flat order W0, b0, W1, (no b1), W2, b2, as doubles.
template <typename T>
std::vector<double> params(lwNetwork_t net) {
  std::vector<double> out;
  for (int i = 0; i < kLayers; ++i) {
    void *w, *b;
    lwNetworkGetLayer(net, i, nullptr, &w, nullptr, &b);
    const T *pw = static_cast<const T *>(w);
    out.insert(out.end(), pw, pw + kSizes[i] * kSizes[i + 1]);
    if (b) out.insert(out.end(), static_cast<const T *>(b), static_cast<const T *>(b) + kSizes[i + 1]);
  }
  return out;
}

template <typename T>
void split_equals_train_step(lwHandle_t, lwNetwork_t one, lwNetwork_t split, lwDataType_t) {
  const int64_t n = 13;
  for (const Case &c : kCases) {
    SCOPED_TRACE(c.name);
    LW_OK(lwNetworkResetOptimizerState(one));
    LW_OK(lwNetworkResetOptimizerState(split));
    Opt o1(c.mode, c.tweak), o2(c.mode, c.tweak);
    LW_OK(lwNetworkSetOption(one, LW_NETWORK_INPUT_GRADIENT, 1));
    LW_OK(lwNetworkSetOption(split, LW_NETWORK_INPUT_GRADIENT, 1));
    LW_OK(lwNetworkSetOption(split, LW_NETWORK_GRADIENT_NORMS, c.mode == LW_OPTIMIZER_SGD ? 1 : 0));
    for (int step = 0; step < 4; ++step) {
      const auto x = batch<T>(n, kSizes[0], 100 + step);
      const auto y = labels(n, 200 + step);
      double l1 = -1, l2 = -2;
      const bool fused_sgd = c.mode == LW_OPTIMIZER_SGD;
      // SGD only takes the unfused TrainStep with gradient norms on: compare that path.
      LW_OK(lwNetworkSetOption(one, LW_NETWORK_GRADIENT_NORMS, fused_sgd ? 1 : 0));
      LW_OK(lwNetworkTrainStep(one, n, x.data(), y.data(), LW_LOSS_SOFTMAX_CROSS_ENTROPY, o1.d, &l1));
      LW_OK(lwNetworkComputeGradients(split, n, x.data(), y.data(), LW_LOSS_SOFTMAX_CROSS_ENTROPY, &l2));
      LW_OK(lwNetworkApplyGradients(split, o2.d));
      EXPECT_EQ(l1, l2);
      // Both options hold for the split too: the same input gradient and gradient norms.
      const void *dx1 = nullptr, *dx2 = nullptr;
      LW_OK(lwNetworkGetInputGradient(one, nullptr, &dx1));
      LW_OK(lwNetworkGetInputGradient(split, nullptr, &dx2));
      EXPECT_EQ(std::memcmp(dx1, dx2, n * kSizes[0] * sizeof(T)), 0);
      if (fused_sgd) {
        double n1[kLayers], n2[kLayers];
        LW_OK(lwNetworkGetGradientNorms(one, n1));
        LW_OK(lwNetworkGetGradientNorms(split, n2));
        for (int i = 0; i < kLayers; ++i) EXPECT_EQ(n1[i], n2[i]);
      }
      const auto p1 = params<T>(one), p2 = params<T>(split);
      ASSERT_EQ(p1.size(), p2.size());
      EXPECT_EQ(std::memcmp(p1.data(), p2.data(), p1.size() * sizeof(double)), 0) << "step " << step;
      int64_t t1 = 0, t2 = 0;
      lwGetOptimizerStepCount(o1.d, &t1);
      lwGetOptimizerStepCount(o2.d, &t2);
      EXPECT_EQ(t1, step + 1);
      EXPECT_EQ(t2, step + 1);
    }
    LW_OK(lwNetworkSetOption(one, LW_NETWORK_GRADIENT_NORMS, 0));
  }
}

TEST_F(NetworkSplit, ComputeThenApplyEqualsTrainStepBitwiseFloat32) {
  split_equals_train_step<float>(h, make(LW_FLOAT32), make(LW_FLOAT32), LW_FLOAT32);
}

TEST_F(NetworkSplit, ComputeThenApplyEqualsTrainStepBitwiseFloat64) {
  split_equals_train_step<double>(h, make(LW_FLOAT64), make(LW_FLOAT64), LW_FLOAT64);
}

// Fused SGD (dW never in memory) against the split: the documented rounding difference.
template <typename T>
void fused_sgd_within_tolerance(lwNetwork_t fused, lwNetwork_t split, double rel) {
  Opt o1(LW_OPTIMIZER_SGD, [](lwOptimizerParams_t &p) { p.momentum = 0.9; });
  Opt o2(LW_OPTIMIZER_SGD, [](lwOptimizerParams_t &p) { p.momentum = 0.9; });
  const int64_t n = 29;
  for (int step = 0; step < 5; ++step) {
    const auto x = batch<T>(n, kSizes[0], 300 + step);
    const auto y = labels(n, 400 + step);
    double l1 = 0, l2 = 0;
    LW_OK(lwNetworkTrainStep(fused, n, x.data(), y.data(), LW_LOSS_SOFTMAX_CROSS_ENTROPY, o1.d, &l1));
    LW_OK(lwNetworkComputeGradients(split, n, x.data(), y.data(), LW_LOSS_SOFTMAX_CROSS_ENTROPY, &l2));
    LW_OK(lwNetworkApplyGradients(split, o2.d));
    EXPECT_NEAR(l1, l2, rel * std::max(1.0, std::fabs(l1)));
  }
  const auto p1 = params<T>(fused), p2 = params<T>(split);
  double scale = 0;
  for (double v : p1) scale = std::max(scale, std::fabs(v));
  for (size_t k = 0; k < p1.size(); ++k) EXPECT_NEAR(p1[k], p2[k], rel * scale) << "parameter " << k;
}

TEST_F(NetworkSplit, FusedSgdTrainStepMatchesSplitWithinRounding) {
  // The documented tolerance (layerwise.h, lwNetworkTrainStep): 1e-6 / 1e-14 x max|W|.
  fused_sgd_within_tolerance<float>(make(LW_FLOAT32), make(LW_FLOAT32), 1e-6);
  fused_sgd_within_tolerance<double>(make(LW_FLOAT64), make(LW_FLOAT64), 1e-14);
}

TEST_F(NetworkSplit, FlatGradientLayoutAndInPlaceChanges) {
  lwNetwork_t net = make(LW_FLOAT64);
  lwTensorDescriptor_t gd = nullptr;
  void *flat = nullptr;
  int64_t count = 0;
  LW_OK(lwNetworkGetGradients(net, &gd, &flat, &count));
  ASSERT_EQ(count, param_count());
  lwDataType_t dt;
  int64_t r, c;
  LW_OK(lwGetTensor2dDescriptor(gd, &dt, &r, &c, nullptr));
  EXPECT_EQ(dt, LW_FLOAT64);
  EXPECT_EQ(r, 1);
  EXPECT_EQ(c, count);
  const int64_t n = 6;
  const auto x = batch<double>(n, kSizes[0], 1);
  const auto y = labels(n, 2);
  LW_OK(lwNetworkComputeGradients(net, n, x.data(), y.data(), LW_LOSS_SOFTMAX_CROSS_ENTROPY, nullptr));
  void *again = nullptr;
  LW_OK(lwNetworkGetGradients(net, nullptr, &again, &count));
  EXPECT_EQ(again, flat);  // the same buffer for the network's lifetime
  const double *g = static_cast<const double *>(flat);
  const std::vector<double> grad(g, g + count);
  // Plain SGD with lr 1: p_after = p_before - g, element by element in the flat order.
  Opt sgd(LW_OPTIMIZER_SGD, [](lwOptimizerParams_t &p) { p.lr = 1.0; });
  const auto before = params<double>(net);
  LW_OK(lwNetworkApplyGradients(net, sgd.d));
  const auto after = params<double>(net);
  double nonzero = 0;
  for (int64_t k = 0; k < count; ++k) {
    EXPECT_EQ(after[k], before[k] - grad[k]) << "element " << k;
    nonzero += std::fabs(grad[k]);
  }
  EXPECT_GT(nonzero, 0);
  // A caller's in-place change (here: zeroing, as a scale by 0) is what the update uses.
  LW_OK(lwNetworkComputeGradients(net, n, x.data(), y.data(), LW_LOSS_SOFTMAX_CROSS_ENTROPY, nullptr));
  std::fill(static_cast<double *>(flat), static_cast<double *>(flat) + count, 0.0);
  LW_OK(lwNetworkApplyGradients(net, sgd.d));
  EXPECT_EQ(params<double>(net), after);
}

TEST_F(NetworkSplit, EmptyBatchGivesZeroGradientsAndMayBeApplied) {
  // A data-parallel rank whose slice of a global batch is empty: the gradient is zero
  // (also before any non-empty batch), and applying it moves nothing under plain SGD.
  lwNetwork_t net = make(LW_FLOAT64);
  Opt sgd(LW_OPTIMIZER_SGD);
  double value = -1;
  LW_OK(lwNetworkComputeGradients(net, 0, nullptr, nullptr, LW_LOSS_SOFTMAX_CROSS_ENTROPY, &value));
  EXPECT_EQ(value, 0.0);
  const auto before = params<double>(net);
  LW_OK(lwNetworkApplyGradients(net, sgd.d));
  EXPECT_EQ(params<double>(net), before);
  const int64_t n = 4;
  const auto x = batch<double>(n, kSizes[0], 3);
  const auto y = labels(n, 4);
  LW_OK(lwNetworkComputeGradients(net, n, x.data(), y.data(), LW_LOSS_SOFTMAX_CROSS_ENTROPY, nullptr));
  void *flat = nullptr;
  int64_t count = 0;
  LW_OK(lwNetworkGetGradients(net, nullptr, &flat, &count));
  const double *g = static_cast<const double *>(flat);
  EXPECT_GT(std::fabs(*std::max_element(g, g + count, [](double a, double b) { return std::fabs(a) < std::fabs(b); })), 0);
  LW_OK(lwNetworkComputeGradients(net, 0, nullptr, nullptr, LW_LOSS_SOFTMAX_CROSS_ENTROPY, nullptr));
  void *again = nullptr;
  LW_OK(lwNetworkGetGradients(net, nullptr, &again, &count));
  EXPECT_EQ(again, flat);  // zeroed in place: views of the buffer stay valid
  for (int64_t k = 0; k < count; ++k) EXPECT_EQ(g[k], 0.0) << "element " << k;
}

TEST_F(NetworkSplit, GradientsMatchFiniteDifferences) {
  lwNetwork_t net = make(LW_FLOAT64);
  const int64_t n = 4;
  const auto x = batch<double>(n, kSizes[0], 5);
  const auto t = batch<double>(n, kSizes[kLayers], 6);
  void *flat = nullptr;
  int64_t count = 0;
  LW_OK(lwNetworkComputeGradients(net, n, x.data(), t.data(), LW_LOSS_QUADRATIC, nullptr));
  LW_OK(lwNetworkGetGradients(net, nullptr, &flat, &count));
  const std::vector<double> grad(static_cast<double *>(flat), static_cast<double *>(flat) + count);
  std::vector<double> y(n * kSizes[kLayers]);
  auto loss = [&] {
    double l = 0;
    lwNetworkForward(net, n, x.data(), y.data());
    for (size_t k = 0; k < y.size(); ++k) l += 0.5 * (y[k] - t[k]) * (y[k] - t[k]);
    return l / n;
  };
  // Walk the parameters in the flat order and perturb each in place.
  std::vector<double *> ptrs;
  for (int i = 0; i < kLayers; ++i) {
    void *w, *b;
    lwNetworkGetLayer(net, i, nullptr, &w, nullptr, &b);
    for (int64_t k = 0; k < kSizes[i] * kSizes[i + 1]; ++k) ptrs.push_back(static_cast<double *>(w) + k);
    if (b)
      for (int64_t k = 0; k < kSizes[i + 1]; ++k) ptrs.push_back(static_cast<double *>(b) + k);
  }
  ASSERT_EQ(static_cast<int64_t>(ptrs.size()), count);
  const double eps = 1e-6;
  for (int64_t k = 0; k < count; k += 3) {
    const double keep = *ptrs[k];
    *ptrs[k] = keep + eps;
    const double up = loss();
    *ptrs[k] = keep - eps;
    const double down = loss();
    *ptrs[k] = keep;
    EXPECT_NEAR(grad[k], (up - down) / (2 * eps), 1e-7) << "element " << k;
  }
}

TEST_F(NetworkSplit, OutputViewIsTheStepsForwardBeforeTheUpdate) {
  lwNetwork_t net = make(LW_FLOAT32);
  const int64_t n = 9;
  const auto x = batch<float>(n, kSizes[0], 7);
  const auto y = labels(n, 8);
  std::vector<float> expect(n * kSizes[kLayers]);
  LW_OK(lwNetworkForward(net, n, x.data(), expect.data()));
  Opt adam(LW_OPTIMIZER_ADAM);
  LW_OK(lwNetworkTrainStep(net, n, x.data(), y.data(), LW_LOSS_SOFTMAX_CROSS_ENTROPY, adam.d, nullptr));
  lwTensorDescriptor_t yd = nullptr;
  const void *out = nullptr;
  LW_OK(lwNetworkGetOutput(net, &yd, &out));
  int64_t r, c;
  LW_OK(lwGetTensor2dDescriptor(yd, nullptr, &r, &c, nullptr));
  EXPECT_EQ(r, n);
  EXPECT_EQ(c, kSizes[kLayers]);
  EXPECT_EQ(std::memcmp(out, expect.data(), expect.size() * sizeof(float)), 0);
  // Fused SGD and ComputeGradients at another n keep it too.
  const int64_t m = 3;
  LW_OK(lwNetworkForward(net, m, x.data(), expect.data()));
  Opt sgd(LW_OPTIMIZER_SGD);
  LW_OK(lwNetworkTrainStep(net, m, x.data(), y.data(), LW_LOSS_SOFTMAX_CROSS_ENTROPY, sgd.d, nullptr));
  LW_OK(lwNetworkGetOutput(net, &yd, &out));
  LW_OK(lwGetTensor2dDescriptor(yd, nullptr, &r, nullptr, nullptr));
  EXPECT_EQ(r, m);
  EXPECT_EQ(std::memcmp(out, expect.data(), m * kSizes[kLayers] * sizeof(float)), 0);
  LW_OK(lwNetworkForward(net, n, x.data(), expect.data()));
  LW_OK(lwNetworkComputeGradients(net, n, x.data(), y.data(), LW_LOSS_SOFTMAX_CROSS_ENTROPY, nullptr));
  LW_OK(lwNetworkGetOutput(net, nullptr, &out));
  EXPECT_EQ(std::memcmp(out, expect.data(), expect.size() * sizeof(float)), 0);
}

TEST_F(NetworkSplit, OptimizerStateViews) {
  lwNetwork_t net = make(LW_FLOAT64);
  Opt adagrad(LW_OPTIMIZER_ADAGRAD, [](lwOptimizerParams_t &p) { p.initial_accumulator_value = 0.25; });
  LW_OK(lwNetworkPrepareOptimizerState(net, adagrad.d));
  lwTensorDescriptor_t sd = nullptr;
  void *sum = nullptr;
  LW_OK(lwNetworkGetOptimizerState(net, 2, 1, 0, &sd, &sum));
  int64_t r, c;
  LW_OK(lwGetTensor2dDescriptor(sd, nullptr, &r, &c, nullptr));
  EXPECT_EQ(r, 1);
  EXPECT_EQ(c, kSizes[3]);
  for (int64_t k = 0; k < c; ++k) EXPECT_EQ(static_cast<double *>(sum)[k], 0.25);
  // Preparing again with the same layout keeps the state (and its values).
  static_cast<double *>(sum)[0] = 3.0;
  LW_OK(lwNetworkPrepareOptimizerState(net, adagrad.d));
  void *same = nullptr;
  LW_OK(lwNetworkGetOptimizerState(net, 2, 1, 0, nullptr, &same));
  EXPECT_EQ(same, sum);
  EXPECT_EQ(static_cast<double *>(same)[0], 3.0);

  // Adam: after one step from zero state, m = (1 - beta1) g and v = (1 - beta2) g^2.
  Opt adam(LW_OPTIMIZER_ADAM);
  LW_OK(lwNetworkPrepareOptimizerState(net, adam.d));
  void *m = nullptr, *v = nullptr;
  LW_OK(lwNetworkGetOptimizerState(net, 1, 0, 0, &sd, &m));
  LW_OK(lwNetworkGetOptimizerState(net, 1, 0, 1, nullptr, &v));
  LW_OK(lwGetTensor2dDescriptor(sd, nullptr, &r, &c, nullptr));
  EXPECT_EQ(r, kSizes[2]);
  EXPECT_EQ(c, kSizes[1]);
  const int64_t n = 5;
  const auto x = batch<double>(n, kSizes[0], 9);
  const auto y = labels(n, 10);
  LW_OK(lwNetworkComputeGradients(net, n, x.data(), y.data(), LW_LOSS_SOFTMAX_CROSS_ENTROPY, nullptr));
  void *flat = nullptr;
  int64_t count = 0;
  LW_OK(lwNetworkGetGradients(net, nullptr, &flat, &count));
  const double *g1 = static_cast<double *>(flat) + kSizes[0] * kSizes[1] + kSizes[1];  // W1 follows W0, b0
  const std::vector<double> g(g1, g1 + kSizes[1] * kSizes[2]);
  LW_OK(lwNetworkApplyGradients(net, adam.d));
  for (size_t k = 0; k < g.size(); ++k) {
    EXPECT_NEAR(static_cast<double *>(m)[k], 0.1 * g[k], 1e-14 * std::fabs(g[k]));
    EXPECT_NEAR(static_cast<double *>(v)[k], 0.001 * g[k] * g[k], 1e-14 * g[k] * g[k]);
  }
  // A layout change gives a new buffer; the old pointers stay readable memory.
  LW_OK(lwNetworkResetOptimizerState(net));
  volatile double old = static_cast<double *>(m)[0];
  (void)old;
  EXPECT_EQ(lwNetworkGetOptimizerState(net, 0, 0, 0, nullptr, &m), LW_STATUS_NOT_SUPPORTED);
}

TEST_F(NetworkSplit, BadParameters) {
  lwNetwork_t net = make(LW_FLOAT32);
  Opt sgd(LW_OPTIMIZER_SGD);
  const auto x = batch<float>(2, kSizes[0], 1);
  const auto y = labels(2, 1);
  void *p = nullptr;
  const void *cp = nullptr;
  int64_t count = 0;
  double l = 0;
  EXPECT_EQ(lwNetworkComputeGradients(nullptr, 2, x.data(), y.data(), LW_LOSS_SOFTMAX_CROSS_ENTROPY, &l),
            LW_STATUS_BAD_PARAM);
  EXPECT_EQ(lwNetworkComputeGradients(net, -1, x.data(), y.data(), LW_LOSS_SOFTMAX_CROSS_ENTROPY, &l),
            LW_STATUS_BAD_PARAM);
  EXPECT_EQ(lwNetworkComputeGradients(net, 2, nullptr, y.data(), LW_LOSS_SOFTMAX_CROSS_ENTROPY, &l),
            LW_STATUS_BAD_PARAM);
  EXPECT_EQ(lwNetworkComputeGradients(net, 2, x.data(), nullptr, LW_LOSS_SOFTMAX_CROSS_ENTROPY, &l),
            LW_STATUS_BAD_PARAM);
  EXPECT_EQ(lwNetworkComputeGradients(net, 2, x.data(), y.data(), static_cast<lwLossMode_t>(9), &l),
            LW_STATUS_BAD_PARAM);
  EXPECT_EQ(lwNetworkGetGradients(nullptr, nullptr, &p, &count), LW_STATUS_BAD_PARAM);
  EXPECT_EQ(lwNetworkGetGradients(net, nullptr, nullptr, &count), LW_STATUS_BAD_PARAM);
  EXPECT_EQ(lwNetworkGetGradients(net, nullptr, &p, nullptr), LW_STATUS_BAD_PARAM);
  EXPECT_EQ(lwNetworkApplyGradients(nullptr, sgd.d), LW_STATUS_BAD_PARAM);
  EXPECT_EQ(lwNetworkApplyGradients(net, nullptr), LW_STATUS_BAD_PARAM);
  EXPECT_EQ(lwNetworkApplyGradients(net, sgd.d), LW_STATUS_NOT_SUPPORTED);  // nothing computed yet
  EXPECT_EQ(lwNetworkGetOutput(nullptr, nullptr, &cp), LW_STATUS_BAD_PARAM);
  EXPECT_EQ(lwNetworkGetOutput(net, nullptr, nullptr), LW_STATUS_BAD_PARAM);
  EXPECT_EQ(lwNetworkGetOutput(net, nullptr, &cp), LW_STATUS_NOT_SUPPORTED);
  EXPECT_EQ(lwNetworkPrepareOptimizerState(nullptr, sgd.d), LW_STATUS_BAD_PARAM);
  EXPECT_EQ(lwNetworkPrepareOptimizerState(net, nullptr), LW_STATUS_BAD_PARAM);
  EXPECT_EQ(lwNetworkGetOptimizerState(net, 0, 0, 0, nullptr, &p), LW_STATUS_NOT_SUPPORTED);
  Opt adam(LW_OPTIMIZER_ADAM);
  LW_OK(lwNetworkPrepareOptimizerState(net, adam.d));
  EXPECT_EQ(lwNetworkGetOptimizerState(nullptr, 0, 0, 0, nullptr, &p), LW_STATUS_BAD_PARAM);
  EXPECT_EQ(lwNetworkGetOptimizerState(net, -1, 0, 0, nullptr, &p), LW_STATUS_BAD_PARAM);
  EXPECT_EQ(lwNetworkGetOptimizerState(net, kLayers, 0, 0, nullptr, &p), LW_STATUS_BAD_PARAM);
  EXPECT_EQ(lwNetworkGetOptimizerState(net, 0, 2, 0, nullptr, &p), LW_STATUS_BAD_PARAM);
  EXPECT_EQ(lwNetworkGetOptimizerState(net, 1, 1, 0, nullptr, &p), LW_STATUS_BAD_PARAM);  // layer 1: no bias
  EXPECT_TRUE(std::strstr(lwGetLastErrorMessage(), "no bias") != nullptr);
  EXPECT_EQ(lwNetworkGetOptimizerState(net, 0, 0, 2, nullptr, &p), LW_STATUS_BAD_PARAM);  // Adam has 2 slots
  EXPECT_EQ(lwNetworkGetOptimizerState(net, 0, 0, -1, nullptr, &p), LW_STATUS_BAD_PARAM);
  EXPECT_EQ(lwNetworkGetOptimizerState(net, 0, 0, 0, nullptr, nullptr), LW_STATUS_BAD_PARAM);
  // n == 0: the loss is 0 and the gradient is the empty batch's, zero (so Apply may run;
  // EmptyBatchGivesZeroGradientsAndMayBeApplied checks the values).
  l = 5;
  LW_OK(lwNetworkComputeGradients(net, 0, nullptr, nullptr, LW_LOSS_SOFTMAX_CROSS_ENTROPY, &l));
  EXPECT_EQ(l, 0.0);
  EXPECT_EQ(lwNetworkApplyGradients(net, sgd.d), LW_STATUS_SUCCESS);
}

}  // namespace
