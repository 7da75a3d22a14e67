// test_network_train.cpp -- lwNetworkTrainStep: bitwise equal to the same
// primitive calls made by hand (fused SGD and the unfused Adam path), float64
// finite-difference checks of the parameter and input gradients, gradient
// norms, optimizer-state handling, and argument validation.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "capi_testing.h"
#include "layerwise/layerwise.h"

namespace {

using lw_test::Desc;

bool mentions(const char *word) { return std::strstr(lwGetLastErrorMessage(), word) != nullptr; }

struct Opt {
  lwOptimizerDescriptor_t d = nullptr;
  Opt(lwOptimizerMode_t mode, double lr, double momentum = 0) {
    lwCreateOptimizerDescriptor(&d);
    lwOptimizerParams_t p;
    lwOptimizerParamsDefault(mode, &p);
    p.lr = lr;
    if (mode == LW_OPTIMIZER_SGD) p.momentum = momentum;
    lwSetOptimizerDescriptor(d, mode, &p);
  }
  ~Opt() { lwDestroyOptimizerDescriptor(d); }
};

const int64_t kSizes[] = {6, 9, 5, 4};
const lwActivationMode_t kActs[] = {LW_ACTIVATION_SIGMOID, LW_ACTIVATION_TANH, LW_ACTIVATION_IDENTITY};
const int kBias[] = {1, 0, 1};

class NetworkTrain : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(lwCreate(&h, LW_DEVICE_CPU), LW_STATUS_SUCCESS); }
  void TearDown() override {
    for (auto n : nets) lwNetworkDestroy(n);
    lwDestroy(h);
  }
  lwNetwork_t make(lwDataType_t dt, uint64_t seed = 7) {
    lwNetwork_t n = nullptr;
    EXPECT_EQ(lwNetworkCreate(h, 3, kSizes, kActs, kBias, dt, &n), LW_STATUS_SUCCESS);
    EXPECT_EQ(lwNetworkInitUniform(n, seed), LW_STATUS_SUCCESS);
    nets.push_back(n);
    return n;
  }
  lwHandle_t h = nullptr;
  std::vector<lwNetwork_t> nets;
};

template <typename T>
std::vector<T> random_batch(int64_t n, int64_t cols, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> d;
  std::vector<T> v(n * cols);
  for (auto &x : v) x = static_cast<T>(d(gen));
  return v;
}

std::vector<int32_t> random_labels(int64_t n, int classes, unsigned seed) {
  std::mt19937 gen(seed);
  std::vector<int32_t> v(n);
  for (auto &x : v) x = static_cast<int32_t>(gen() % classes);
  return v;
}

// Parameter bytes of layer i (weights then bias) for comparisons.
std::vector<char> layer_bytes(lwNetwork_t net, int i, size_t elem) {
  void *w, *b;
  lwNetworkGetLayer(net, i, nullptr, &w, nullptr, &b);
  std::vector<char> out(static_cast<char *>(w), static_cast<char *>(w) + kSizes[i] * kSizes[i + 1] * elem);
  if (b) out.insert(out.end(), static_cast<char *>(b), static_cast<char *>(b) + kSizes[i + 1] * elem);
  return out;
}

// The documented sequence of primitive calls for one step; `fused` picks
// lwLinearBackwardUpdate, else BackwardData + BackwardWeights + OptimizerStep.
// state: per layer, state buffers for W and b (count each), zero-initialised by the caller.
template <typename T>
double manual_step(lwHandle_t h, lwNetwork_t net, lwDataType_t dt, int64_t n, const T *x, const void *target,
                   lwLossMode_t loss, lwOptimizerDescriptor_t opt, bool fused,
                   std::vector<std::vector<std::vector<T>>> &wstate, std::vector<std::vector<std::vector<T>>> &bstate) {
  std::vector<std::vector<T>> a(4);
  a[0].assign(x, x + n * kSizes[0]);
  std::vector<Desc *> ad;
  for (int i = 0; i < 4; ++i) ad.push_back(new Desc(dt, n, kSizes[i]));
  for (int i = 0; i < 3; ++i) {
    lwTensorDescriptor_t wd, bd;
    void *w, *b;
    lwNetworkGetLayer(net, i, &wd, &w, &bd, &b);
    a[i + 1].resize(n * kSizes[i + 1]);
    EXPECT_EQ(lwLinearForward(h, 1.0, *ad[i], a[i].data(), wd, w, bd, b, kActs[i], 0.0, *ad[i + 1], a[i + 1].data()),
              LW_STATUS_SUCCESS);
  }
  Desc labels(LW_INT32, n, 1);
  std::vector<T> g(n * kSizes[3]);
  double lv = 0;
  EXPECT_EQ(lwLossForwardBackward(h, loss, *ad[3], a[3].data(), loss == LW_LOSS_SOFTMAX_CROSS_ENTROPY ? labels.d : ad[3]->d,
                                  target, &lv, *ad[3], g.data()),
            LW_STATUS_SUCCESS);
  for (int i = 2; i >= 0; --i) {
    if (kActs[i] != LW_ACTIVATION_IDENTITY)
      EXPECT_EQ(lwActivationBackward(h, kActs[i], 1.0, *ad[i + 1], a[i + 1].data(), *ad[i + 1], g.data(), nullptr,
                                     nullptr, 0.0, *ad[i + 1], g.data()),
                LW_STATUS_SUCCESS);
    lwTensorDescriptor_t wd, bd;
    void *w, *b;
    lwNetworkGetLayer(net, i, &wd, &w, &bd, &b);
    std::vector<void *> ws, bs;
    for (auto &s : wstate[i]) ws.push_back(s.data());
    for (auto &s : bstate[i]) bs.push_back(s.data());
    std::vector<T> dx(i > 0 ? n * kSizes[i] : 0);
    if (fused) {
      EXPECT_EQ(lwLinearBackwardUpdate(h, opt, *ad[i + 1], g.data(), *ad[i], a[i].data(), wd, w, ws.data(), bd, b,
                                       b ? bs.data() : nullptr, i > 0 ? ad[i]->d : nullptr, i > 0 ? dx.data() : nullptr),
                LW_STATUS_SUCCESS) << lwGetLastErrorMessage();
    } else {
      std::vector<T> dw(kSizes[i] * kSizes[i + 1]), db(kSizes[i + 1]);
      if (i > 0) EXPECT_EQ(lwLinearBackwardData(h, 1.0, *ad[i + 1], g.data(), wd, w, 0.0, *ad[i], dx.data()), LW_STATUS_SUCCESS);
      EXPECT_EQ(lwLinearBackwardWeights(h, 1.0, *ad[i + 1], g.data(), *ad[i], a[i].data(), 0.0, wd, dw.data(), bd,
                                        b ? db.data() : nullptr),
                LW_STATUS_SUCCESS);
      EXPECT_EQ(lwOptimizerStep(h, opt, wd, w, dw.data(), ws.data()), LW_STATUS_SUCCESS);
      if (b) EXPECT_EQ(lwOptimizerStep(h, opt, bd, b, db.data(), bs.data()), LW_STATUS_SUCCESS);
    }
    g.swap(dx);
  }
  EXPECT_EQ(lwOptimizerAdvanceStep(opt), LW_STATUS_SUCCESS);
  for (auto d : ad) delete d;
  return lv;
}

template <typename T>
void check_bitwise(lwHandle_t h, lwNetwork_t net, lwNetwork_t twin, lwDataType_t dt, lwOptimizerMode_t mode,
                   lwLossMode_t loss) {
  Opt o1(mode, 0.1, 0.9), o2(mode, 0.1, 0.9);
  int count;
  lwGetOptimizerStateCount(o1.d, &count);
  std::vector<std::vector<std::vector<T>>> ws(3), bs(3);
  for (int i = 0; i < 3; ++i) {
    ws[i].assign(count, std::vector<T>(kSizes[i] * kSizes[i + 1]));
    bs[i].assign(count, std::vector<T>(kSizes[i + 1]));
  }
  // Batch sizes vary, so the step also reuses and regrows its workspace.
  for (int64_t n : {5, 5, 11, 3}) {
    const auto x = random_batch<T>(n, kSizes[0], 100 + n);
    std::vector<T> dense;
    std::vector<int32_t> labels;
    const void *target;
    if (loss == LW_LOSS_SOFTMAX_CROSS_ENTROPY) {
      labels = random_labels(n, kSizes[3], 7 + n);
      target = labels.data();
    } else {
      dense = random_batch<T>(n, kSizes[3], 9 + n);
      target = dense.data();
    }
    double l1 = -1;
    LW_OK(lwNetworkTrainStep(net, n, x.data(), target, loss, o1.d, &l1));
    const double l2 = manual_step<T>(h, twin, dt, n, x.data(), target, loss, o2.d, mode == LW_OPTIMIZER_SGD, ws, bs);
    EXPECT_EQ(l1, l2) << "n=" << n;
    for (int i = 0; i < 3; ++i) EXPECT_EQ(layer_bytes(net, i, sizeof(T)), layer_bytes(twin, i, sizeof(T))) << "layer " << i;
  }
  int64_t t1, t2;
  lwGetOptimizerStepCount(o1.d, &t1);
  lwGetOptimizerStepCount(o2.d, &t2);
  EXPECT_EQ(t1, 4);
  EXPECT_EQ(t2, 4);
}

TEST_F(NetworkTrain, SgdMomentumEqualsPrimitiveSequenceFloat32) {
  check_bitwise<float>(h, make(LW_FLOAT32), make(LW_FLOAT32), LW_FLOAT32, LW_OPTIMIZER_SGD,
                       LW_LOSS_SOFTMAX_CROSS_ENTROPY);
}
TEST_F(NetworkTrain, SgdMomentumEqualsPrimitiveSequenceFloat64) {
  check_bitwise<double>(h, make(LW_FLOAT64), make(LW_FLOAT64), LW_FLOAT64, LW_OPTIMIZER_SGD, LW_LOSS_QUADRATIC);
}
TEST_F(NetworkTrain, AdamEqualsPrimitiveSequence) {
  check_bitwise<float>(h, make(LW_FLOAT32), make(LW_FLOAT32), LW_FLOAT32, LW_OPTIMIZER_ADAM,
                       LW_LOSS_SOFTMAX_CROSS_ENTROPY);
}

// Loss of the network on (x, labels) through lwNetworkForward + lwLossForwardBackward.
double loss_of(lwHandle_t h, lwNetwork_t net, int64_t n, const std::vector<double> &x, const std::vector<int32_t> &lab) {
  std::vector<double> y(n * kSizes[3]);
  EXPECT_EQ(lwNetworkForward(net, n, x.data(), y.data()), LW_STATUS_SUCCESS);
  Desc yd(LW_FLOAT64, n, kSizes[3]), ld(LW_INT32, n, 1);
  double l = 0;
  EXPECT_EQ(lwLossForwardBackward(h, LW_LOSS_SOFTMAX_CROSS_ENTROPY, yd, y.data(), ld, lab.data(), &l, nullptr, nullptr),
            LW_STATUS_SUCCESS);
  return l;
}

TEST_F(NetworkTrain, GradientsMatchFiniteDifferences) {
  // Plain SGD with lr = 1 moves every parameter by exactly -dJ/dparam (checked in float64).
  lwNetwork_t net = make(LW_FLOAT64), before = make(LW_FLOAT64);
  const int64_t n = 4;
  const auto x = random_batch<double>(n, kSizes[0], 3);
  const auto lab = random_labels(n, kSizes[3], 4);
  for (int norms = 0; norms <= 1; ++norms) {
    LW_OK(lwNetworkInitUniform(net, 21));
    LW_OK(lwNetworkSetOption(net, LW_NETWORK_INPUT_GRADIENT, 1));
    LW_OK(lwNetworkSetOption(net, LW_NETWORK_GRADIENT_NORMS, norms));
    Opt sgd(LW_OPTIMIZER_SGD, 1.0);
    double l;
    LW_OK(lwNetworkTrainStep(net, n, x.data(), lab.data(), LW_LOSS_SOFTMAX_CROSS_ENTROPY, sgd.d, &l));
    LW_OK(lwNetworkInitUniform(before, 21));
    EXPECT_NEAR(l, loss_of(h, before, n, x, lab), 1e-14);
    const double eps = 1e-6;
    for (int i = 0; i < 3; ++i) {
      void *w0, *w1, *b0, *b1;
      lwNetworkGetLayer(before, i, nullptr, &w0, nullptr, &b0);
      lwNetworkGetLayer(net, i, nullptr, &w1, nullptr, &b1);
      double sq = 0;
      auto check_param = [&](double *p0, double *p1, int64_t k) {
        const double grad = p0[k] - p1[k], keep = p0[k];
        p0[k] = keep + eps;
        const double up = loss_of(h, before, n, x, lab);
        p0[k] = keep - eps;
        const double down = loss_of(h, before, n, x, lab);
        p0[k] = keep;
        EXPECT_NEAR(grad, (up - down) / (2 * eps), 1e-7) << "layer " << i << " k " << k;
        sq += grad * grad;
      };
      for (int64_t k = 0; k < kSizes[i] * kSizes[i + 1]; ++k)
        check_param(static_cast<double *>(w0), static_cast<double *>(w1), k);
      if (b0)
        for (int64_t k = 0; k < kSizes[i + 1]; ++k) check_param(static_cast<double *>(b0), static_cast<double *>(b1), k);
      if (norms) {
        std::vector<double> got(3);
        LW_OK(lwNetworkGetGradientNorms(net, got.data()));
        EXPECT_NEAR(got[i], std::sqrt(sq), 1e-12);
      }
    }
    // dJ/dx from the step against finite differences in x.
    lwTensorDescriptor_t dxd;
    const void *dx;
    LW_OK(lwNetworkGetInputGradient(net, &dxd, &dx));
    int64_t r, c;
    lwGetTensor2dDescriptor(dxd, nullptr, &r, &c, nullptr);
    ASSERT_EQ(r, n);
    ASSERT_EQ(c, kSizes[0]);
    for (int64_t k = 0; k < n * kSizes[0]; ++k) {
      auto xp = x, xm = x;
      xp[k] += eps;
      xm[k] -= eps;
      EXPECT_NEAR(static_cast<const double *>(dx)[k], (loss_of(h, before, n, xp, lab) - loss_of(h, before, n, xm, lab)) / (2 * eps),
                  1e-7);
    }
  }
}

TEST_F(NetworkTrain, OptimizerStateFollowsTheDescriptor) {
  // Two networks trained with momentum stay equal; resetting the state of one makes it diverge
  // from the other exactly as a fresh network would.
  lwNetwork_t a = make(LW_FLOAT64), b = make(LW_FLOAT64), fresh = make(LW_FLOAT64);
  Opt oa(LW_OPTIMIZER_SGD, 0.05, 0.9), ob(LW_OPTIMIZER_SGD, 0.05, 0.9), of(LW_OPTIMIZER_SGD, 0.05, 0.9);
  const auto x = random_batch<double>(3, kSizes[0], 1);
  const auto lab = random_labels(3, kSizes[3], 2);
  LW_OK(lwNetworkTrainStep(a, 3, x.data(), lab.data(), LW_LOSS_SOFTMAX_CROSS_ENTROPY, oa.d, nullptr));
  LW_OK(lwNetworkTrainStep(b, 3, x.data(), lab.data(), LW_LOSS_SOFTMAX_CROSS_ENTROPY, ob.d, nullptr));
  // fresh := a's parameters, with no velocity.
  for (int i = 0; i < 3; ++i) {
    void *wa, *wf, *ba, *bf;
    lwNetworkGetLayer(a, i, nullptr, &wa, nullptr, &ba);
    lwNetworkGetLayer(fresh, i, nullptr, &wf, nullptr, &bf);
    std::memcpy(wf, wa, kSizes[i] * kSizes[i + 1] * 8);
    if (ba) std::memcpy(bf, ba, kSizes[i + 1] * 8);
  }
  LW_OK(lwNetworkResetOptimizerState(b));
  LW_OK(lwNetworkTrainStep(b, 3, x.data(), lab.data(), LW_LOSS_SOFTMAX_CROSS_ENTROPY, ob.d, nullptr));
  LW_OK(lwNetworkTrainStep(fresh, 3, x.data(), lab.data(), LW_LOSS_SOFTMAX_CROSS_ENTROPY, of.d, nullptr));
  LW_OK(lwNetworkTrainStep(a, 3, x.data(), lab.data(), LW_LOSS_SOFTMAX_CROSS_ENTROPY, oa.d, nullptr));
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(layer_bytes(b, i, 8), layer_bytes(fresh, i, 8));
    EXPECT_NE(layer_bytes(a, i, 8), layer_bytes(b, i, 8));
  }
}

TEST_F(NetworkTrain, TrainingReducesTheLoss) {
  lwNetwork_t net = make(LW_FLOAT32);
  Opt sgd(LW_OPTIMIZER_SGD, 0.5, 0.9);
  const auto x = random_batch<float>(16, kSizes[0], 5);
  const auto lab = random_labels(16, kSizes[3], 6);
  double first = 0, last = 0;
  for (int it = 0; it < 60; ++it) {
    LW_OK(lwNetworkTrainStep(net, 16, x.data(), lab.data(), LW_LOSS_SOFTMAX_CROSS_ENTROPY, sgd.d, &last));
    if (it == 0) first = last;
  }
  EXPECT_LT(last, 0.5 * first);
}

TEST_F(NetworkTrain, Validates) {
  lwNetwork_t net = make(LW_FLOAT32);
  Opt sgd(LW_OPTIMIZER_SGD, 0.1);
  std::vector<float> x(2 * 6), t(2 * 4);
  std::vector<int32_t> lab = {0, 9};
  double l = 5;
  EXPECT_EQ(lwNetworkTrainStep(nullptr, 2, x.data(), t.data(), LW_LOSS_QUADRATIC, sgd.d, &l), LW_STATUS_BAD_PARAM);
  EXPECT_EQ(lwNetworkTrainStep(net, -2, x.data(), t.data(), LW_LOSS_QUADRATIC, sgd.d, &l), LW_STATUS_BAD_PARAM);
  EXPECT_EQ(lwNetworkTrainStep(net, 2, nullptr, t.data(), LW_LOSS_QUADRATIC, sgd.d, &l), LW_STATUS_BAD_PARAM);
  EXPECT_TRUE(mentions("x"));
  EXPECT_EQ(lwNetworkTrainStep(net, 2, x.data(), nullptr, LW_LOSS_QUADRATIC, sgd.d, &l), LW_STATUS_BAD_PARAM);
  EXPECT_TRUE(mentions("target"));
  EXPECT_EQ(lwNetworkTrainStep(net, 2, x.data(), t.data(), LW_LOSS_QUADRATIC, nullptr, &l), LW_STATUS_BAD_PARAM);
  EXPECT_TRUE(mentions("opt"));
  int bad_loss = 17;
  lwLossMode_t bl;
  std::memcpy(&bl, &bad_loss, sizeof bl);
  EXPECT_EQ(lwNetworkTrainStep(net, 2, x.data(), t.data(), bl, sgd.d, &l), LW_STATUS_BAD_PARAM);
  EXPECT_TRUE(mentions("loss"));
  const auto before = layer_bytes(net, 2, 4);
  EXPECT_EQ(lwNetworkTrainStep(net, 2, x.data(), lab.data(), LW_LOSS_SOFTMAX_CROSS_ENTROPY, sgd.d, &l),
            LW_STATUS_BAD_PARAM);  // class id 9 of 4
  EXPECT_TRUE(mentions("class id"));
  EXPECT_EQ(layer_bytes(net, 2, 4), before);  // nothing was updated
  LW_OK(lwNetworkTrainStep(net, 0, nullptr, nullptr, LW_LOSS_QUADRATIC, sgd.d, &l));
  EXPECT_EQ(l, 0.0);
  EXPECT_EQ(lwNetworkSetOption(net, LW_NETWORK_INPUT_GRADIENT, 2), LW_STATUS_BAD_PARAM);
  int v;
  int bad_opt = 9;
  lwNetworkOption_t bo;
  std::memcpy(&bo, &bad_opt, sizeof bo);
  EXPECT_EQ(lwNetworkGetOption(net, bo, &v), LW_STATUS_BAD_PARAM);
  EXPECT_EQ(lwNetworkGetInputGradient(net, nullptr, nullptr), LW_STATUS_NOT_SUPPORTED);
  double norms[3];
  EXPECT_EQ(lwNetworkGetGradientNorms(net, norms), LW_STATUS_NOT_SUPPORTED);
}

}  // namespace
