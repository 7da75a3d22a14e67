// test_network.cpp -- lwNetwork_t on CPU handles: creation and its validation,
// zero-copy parameter access, lwNetworkInitUniform, and lwNetworkForward against
// a float64 reference and (bitwise) against the same lwLinearForward calls.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "capi_testing.h"
#include "layerwise/layerwise.h"

namespace {

bool mentions(const char *word) { return std::strstr(lwGetLastErrorMessage(), word) != nullptr; }

class Network : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(lwCreate(&h, LW_DEVICE_CPU), LW_STATUS_SUCCESS); }
  void TearDown() override {
    if (net) lwNetworkDestroy(net);
    lwDestroy(h);
  }
  lwHandle_t h = nullptr;
  lwNetwork_t net = nullptr;
};

// Fills every parameter with N(0, 0.5) draws.
template <typename T>
void fill_params(lwNetwork_t net, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> dist(0.0, 0.5);
  int L;
  ASSERT_EQ(lwNetworkGetLayerCount(net, &L), LW_STATUS_SUCCESS);
  for (int i = 0; i < L; ++i) {
    lwTensorDescriptor_t wd, bd;
    void *w, *b;
    ASSERT_EQ(lwNetworkGetLayer(net, i, &wd, &w, &bd, &b), LW_STATUS_SUCCESS);
    int64_t r, c, ld;
    ASSERT_EQ(lwGetTensor2dDescriptor(wd, nullptr, &r, &c, &ld), LW_STATUS_SUCCESS);
    for (int64_t k = 0; k < r * c; ++k) static_cast<T *>(w)[k] = static_cast<T>(dist(gen));
    if (b)
      for (int64_t k = 0; k < r; ++k) static_cast<T *>(b)[k] = static_cast<T>(dist(gen));
  }
}

double act_ref(lwActivationMode_t a, double z) {
  switch (a) {
    case LW_ACTIVATION_SIGMOID: return 1.0 / (1.0 + std::exp(-z));
    case LW_ACTIVATION_TANH: return std::tanh(z);
    case LW_ACTIVATION_RELU: return z > 0 ? z : 0;
    case LW_ACTIVATION_THRESHOLD: return z > 0 ? 1 : 0;
    default: return z;
  }
}

// The network's function in float64 from its own parameters.
template <typename T>
std::vector<double> forward_ref(lwNetwork_t net, int64_t n, const std::vector<T> &x) {
  int L;
  lwNetworkGetLayerCount(net, &L);
  std::vector<int64_t> sizes(L + 1);
  lwNetworkGetSizes(net, sizes.data());
  std::vector<double> a(x.begin(), x.end());
  for (int i = 0; i < L; ++i) {
    void *w, *b;
    lwActivationMode_t act;
    lwNetworkGetLayer(net, i, nullptr, &w, nullptr, &b);
    lwNetworkGetActivation(net, i, &act);
    const int64_t in = sizes[i], out = sizes[i + 1];
    std::vector<double> next(n * out);
    for (int64_t r = 0; r < n; ++r)
      for (int64_t o = 0; o < out; ++o) {
        double z = b ? static_cast<T *>(b)[o] : 0.0;
        for (int64_t k = 0; k < in; ++k) z += a[r * in + k] * static_cast<T *>(w)[o * in + k];
        next[r * out + o] = act_ref(act, z);
      }
    a.swap(next);
  }
  return a;
}

TEST_F(Network, CreateReportsItsArchitecture) {
  const int64_t sizes[] = {5, 7, 3, 2};
  const lwActivationMode_t acts[] = {LW_ACTIVATION_SIGMOID, LW_ACTIVATION_TANH, LW_ACTIVATION_IDENTITY};
  const int bias[] = {1, 0, 1};
  LW_OK(lwNetworkCreate(h, 3, sizes, acts, bias, LW_FLOAT64, &net));
  int L;
  LW_OK(lwNetworkGetLayerCount(net, &L));
  EXPECT_EQ(L, 3);
  int64_t got[4];
  LW_OK(lwNetworkGetSizes(net, got));
  for (int i = 0; i < 4; ++i) EXPECT_EQ(got[i], sizes[i]);
  lwDataType_t dt;
  LW_OK(lwNetworkGetDataType(net, &dt));
  EXPECT_EQ(dt, LW_FLOAT64);
  lwHandle_t hh;
  LW_OK(lwNetworkGetHandle(net, &hh));
  EXPECT_EQ(hh, h);
  for (int i = 0; i < 3; ++i) {
    lwActivationMode_t a;
    LW_OK(lwNetworkGetActivation(net, i, &a));
    EXPECT_EQ(a, acts[i]);
    lwTensorDescriptor_t wd, bd;
    void *w, *b;
    LW_OK(lwNetworkGetLayer(net, i, &wd, &w, &bd, &b));
    lwDataType_t t;
    int64_t r, c, ld;
    LW_OK(lwGetTensor2dDescriptor(wd, &t, &r, &c, &ld));
    EXPECT_EQ(t, LW_FLOAT64);
    EXPECT_EQ(r, sizes[i + 1]);
    EXPECT_EQ(c, sizes[i]);
    EXPECT_EQ(ld, sizes[i]);
    for (int64_t k = 0; k < r * c; ++k) EXPECT_EQ(static_cast<double *>(w)[k], 0.0);  // zeroed
    if (bias[i]) {
      ASSERT_NE(b, nullptr);
      LW_OK(lwGetTensor2dDescriptor(bd, &t, &r, &c, &ld));
      EXPECT_EQ(r, 1);
      EXPECT_EQ(c, sizes[i + 1]);
    } else {
      EXPECT_EQ(b, nullptr);
      EXPECT_EQ(bd, nullptr);
    }
  }
}

TEST_F(Network, NullHasBiasMeansEveryLayerHasOne) {
  const int64_t sizes[] = {2, 3};
  const lwActivationMode_t acts[] = {LW_ACTIVATION_RELU};
  LW_OK(lwNetworkCreate(h, 1, sizes, acts, nullptr, LW_FLOAT32, &net));
  void *b;
  LW_OK(lwNetworkGetLayer(net, 0, nullptr, nullptr, nullptr, &b));
  EXPECT_NE(b, nullptr);
}

TEST_F(Network, CreateValidatesEveryArgument) {
  const int64_t sizes[] = {4, 3, 2};
  const lwActivationMode_t acts[] = {LW_ACTIVATION_SIGMOID, LW_ACTIVATION_IDENTITY};
  lwNetwork_t n = reinterpret_cast<lwNetwork_t>(0x1);
  EXPECT_EQ(lwNetworkCreate(h, 2, sizes, acts, nullptr, LW_FLOAT32, nullptr), LW_STATUS_BAD_PARAM);
  EXPECT_TRUE(mentions("net"));
  EXPECT_EQ(lwNetworkCreate(nullptr, 2, sizes, acts, nullptr, LW_FLOAT32, &n), LW_STATUS_BAD_PARAM);
  EXPECT_TRUE(mentions("handle"));
  EXPECT_EQ(n, nullptr);  // the output is cleared on failure
  EXPECT_EQ(lwNetworkCreate(h, 0, sizes, acts, nullptr, LW_FLOAT32, &n), LW_STATUS_BAD_PARAM);
  EXPECT_TRUE(mentions("nlayers"));
  EXPECT_EQ(lwNetworkCreate(h, 2, nullptr, acts, nullptr, LW_FLOAT32, &n), LW_STATUS_BAD_PARAM);
  EXPECT_TRUE(mentions("sizes"));
  EXPECT_EQ(lwNetworkCreate(h, 2, sizes, nullptr, nullptr, LW_FLOAT32, &n), LW_STATUS_BAD_PARAM);
  EXPECT_TRUE(mentions("activations"));
  EXPECT_EQ(lwNetworkCreate(h, 2, sizes, acts, nullptr, LW_INT32, &n), LW_STATUS_BAD_PARAM);
  EXPECT_TRUE(mentions("dtype"));
  int bad_dtype = 7;
  lwDataType_t dt;
  std::memcpy(&dt, &bad_dtype, sizeof dt);
  EXPECT_EQ(lwNetworkCreate(h, 2, sizes, acts, nullptr, dt, &n), LW_STATUS_BAD_PARAM);
  const int64_t zero[] = {4, 0, 2};
  EXPECT_EQ(lwNetworkCreate(h, 2, zero, acts, nullptr, LW_FLOAT32, &n), LW_STATUS_BAD_PARAM);
  EXPECT_TRUE(mentions("sizes[1]"));
  const int64_t huge[] = {4, int64_t{1} << 40, 2};
  EXPECT_EQ(lwNetworkCreate(h, 2, huge, acts, nullptr, LW_FLOAT32, &n), LW_STATUS_BAD_PARAM);
  EXPECT_TRUE(mentions("sizes[1]"));
  const int64_t wide[] = {(int64_t{1} << 31) - 1, (int64_t{1} << 31) - 1, 2};
  EXPECT_EQ(lwNetworkCreate(h, 2, wide, acts, nullptr, LW_FLOAT32, &n), LW_STATUS_BAD_PARAM);
  EXPECT_TRUE(mentions("layer 0 weight"));
  int bad_act = 42;
  lwActivationMode_t acts_bad[2] = {LW_ACTIVATION_SIGMOID, LW_ACTIVATION_SIGMOID};
  std::memcpy(&acts_bad[1], &bad_act, sizeof bad_act);
  EXPECT_EQ(lwNetworkCreate(h, 2, sizes, acts_bad, nullptr, LW_FLOAT32, &n), LW_STATUS_BAD_PARAM);
  EXPECT_TRUE(mentions("activations[1]"));
  EXPECT_EQ(n, nullptr);
}

TEST_F(Network, GettersValidate) {
  const int64_t sizes[] = {2, 2};
  const lwActivationMode_t acts[] = {LW_ACTIVATION_IDENTITY};
  LW_OK(lwNetworkCreate(h, 1, sizes, acts, nullptr, LW_FLOAT32, &net));
  int L;
  EXPECT_EQ(lwNetworkGetLayerCount(nullptr, &L), LW_STATUS_BAD_PARAM);
  EXPECT_EQ(lwNetworkGetLayerCount(net, nullptr), LW_STATUS_BAD_PARAM);
  EXPECT_EQ(lwNetworkGetSizes(net, nullptr), LW_STATUS_BAD_PARAM);
  EXPECT_EQ(lwNetworkGetDataType(net, nullptr), LW_STATUS_BAD_PARAM);
  EXPECT_EQ(lwNetworkGetHandle(net, nullptr), LW_STATUS_BAD_PARAM);
  lwActivationMode_t a;
  EXPECT_EQ(lwNetworkGetActivation(net, 1, &a), LW_STATUS_BAD_PARAM);
  EXPECT_TRUE(mentions("out of range"));
  EXPECT_EQ(lwNetworkGetLayer(net, -1, nullptr, nullptr, nullptr, nullptr), LW_STATUS_BAD_PARAM);
  EXPECT_TRUE(mentions("layer"));
  EXPECT_EQ(lwNetworkDestroy(nullptr), LW_STATUS_BAD_PARAM);
  EXPECT_EQ(lwNetworkInitUniform(nullptr, 1), LW_STATUS_BAD_PARAM);
}

TEST_F(Network, InitUniformIsBoundedDeterministicAndSeeded) {
  const int64_t sizes[] = {9, 4, 3};
  const lwActivationMode_t acts[] = {LW_ACTIVATION_SIGMOID, LW_ACTIVATION_SIGMOID};
  LW_OK(lwNetworkCreate(h, 2, sizes, acts, nullptr, LW_FLOAT64, &net));
  lwNetwork_t other;
  LW_OK(lwNetworkCreate(h, 2, sizes, acts, nullptr, LW_FLOAT64, &other));
  LW_OK(lwNetworkInitUniform(net, 123));
  LW_OK(lwNetworkInitUniform(other, 123));
  for (int i = 0; i < 2; ++i) {
    void *w, *b, *w2, *b2;
    LW_OK(lwNetworkGetLayer(net, i, nullptr, &w, nullptr, &b));
    LW_OK(lwNetworkGetLayer(other, i, nullptr, &w2, nullptr, &b2));
    const int64_t nw = sizes[i] * sizes[i + 1];
    const double r = 1.0 / std::sqrt(static_cast<double>(sizes[i]));
    double lo = 1, hi = -1;
    for (int64_t k = 0; k < nw; ++k) {
      const double v = static_cast<double *>(w)[k];
      EXPECT_LE(std::fabs(v), r);
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
    EXPECT_LT(lo, 0);  // both signs occur
    EXPECT_GT(hi, 0);
    EXPECT_EQ(std::memcmp(w, w2, nw * 8), 0);
    EXPECT_EQ(std::memcmp(b, b2, sizes[i + 1] * 8), 0);
  }
  LW_OK(lwNetworkInitUniform(other, 124));
  void *w, *w2;
  LW_OK(lwNetworkGetLayer(net, 0, nullptr, &w, nullptr, nullptr));
  LW_OK(lwNetworkGetLayer(other, 0, nullptr, &w2, nullptr, nullptr));
  EXPECT_NE(std::memcmp(w, w2, 36 * 8), 0);
  lwNetworkDestroy(other);
}

template <typename T>
void check_forward(lwHandle_t h, lwDataType_t dtype, double tol) {
  // Odd widths, one layer without bias, every differentiable activation.
  const int64_t sizes[] = {7, 13, 1, 5, 3};
  const lwActivationMode_t acts[] = {LW_ACTIVATION_SIGMOID, LW_ACTIVATION_TANH, LW_ACTIVATION_RELU,
                                     LW_ACTIVATION_IDENTITY};
  const int bias[] = {1, 1, 0, 1};
  lwNetwork_t net;
  LW_OK(lwNetworkCreate(h, 4, sizes, acts, bias, dtype, &net));
  fill_params<T>(net, 5);
  std::mt19937 gen(9);
  std::normal_distribution<double> dist;
  // Growing, then shrinking, batch sizes exercise the workspace reuse.
  for (int64_t n : {1, 3, 17, 2}) {
    std::vector<T> x(n * 7), y(n * 3, T(-99)), y_prim(n * 3);
    for (auto &v : x) v = static_cast<T>(dist(gen));
    LW_OK(lwNetworkForward(net, n, x.data(), y.data()));
    const auto ref = forward_ref<T>(net, n, x);
    for (int64_t k = 0; k < n * 3; ++k) EXPECT_NEAR(y[k], ref[k], tol) << "n=" << n << " k=" << k;
    // The same lwLinearForward calls by hand give the same bits.
    std::vector<T> a(x);
    for (int i = 0; i < 4; ++i) {
      lwTensorDescriptor_t wd, bd, xd, yd;
      void *w, *b;
      LW_OK(lwNetworkGetLayer(net, i, &wd, &w, &bd, &b));
      lwCreateTensorDescriptor(&xd);
      lwCreateTensorDescriptor(&yd);
      lwSetTensor2dDescriptor(xd, dtype, n, sizes[i], sizes[i]);
      lwSetTensor2dDescriptor(yd, dtype, n, sizes[i + 1], sizes[i + 1]);
      std::vector<T> next(n * sizes[i + 1]);
      LW_OK(lwLinearForward(h, 1.0, xd, a.data(), wd, w, bd, b, acts[i], 0.0, yd, next.data()));
      lwDestroyTensorDescriptor(xd);
      lwDestroyTensorDescriptor(yd);
      a.swap(next);
    }
    EXPECT_EQ(std::memcmp(a.data(), y.data(), y.size() * sizeof(T)), 0) << "n=" << n;
  }
  lwNetworkDestroy(net);
}

TEST_F(Network, ForwardMatchesReferenceFloat64) { check_forward<double>(h, LW_FLOAT64, 1e-12); }
TEST_F(Network, ForwardMatchesReferenceFloat32) { check_forward<float>(h, LW_FLOAT32, 1e-5); }

TEST_F(Network, SingleLayerForwardWritesStraightToY) {
  const int64_t sizes[] = {3, 2};
  const lwActivationMode_t acts[] = {LW_ACTIVATION_SIGMOID};
  LW_OK(lwNetworkCreate(h, 1, sizes, acts, nullptr, LW_FLOAT64, &net));
  fill_params<double>(net, 1);
  std::vector<double> x = {0.1, -0.2, 0.3}, y(2);
  LW_OK(lwNetworkForward(net, 1, x.data(), y.data()));
  const auto ref = forward_ref<double>(net, 1, x);
  EXPECT_NEAR(y[0], ref[0], 1e-14);
  EXPECT_NEAR(y[1], ref[1], 1e-14);
}

TEST_F(Network, ForwardValidates) {
  const int64_t sizes[] = {3, 4, 2};
  const lwActivationMode_t acts[] = {LW_ACTIVATION_SIGMOID, LW_ACTIVATION_IDENTITY};
  LW_OK(lwNetworkCreate(h, 2, sizes, acts, nullptr, LW_FLOAT32, &net));
  std::vector<float> x(6), y(4, 7.0f);
  EXPECT_EQ(lwNetworkForward(nullptr, 2, x.data(), y.data()), LW_STATUS_BAD_PARAM);
  EXPECT_EQ(lwNetworkForward(net, -1, x.data(), y.data()), LW_STATUS_BAD_PARAM);
  EXPECT_TRUE(mentions("n must be"));
  EXPECT_EQ(lwNetworkForward(net, 2, nullptr, y.data()), LW_STATUS_BAD_PARAM);
  EXPECT_TRUE(mentions("x"));
  EXPECT_EQ(lwNetworkForward(net, 2, x.data(), nullptr), LW_STATUS_BAD_PARAM);
  EXPECT_TRUE(mentions("y"));
  EXPECT_EQ(lwNetworkForward(net, int64_t{1} << 62, x.data(), y.data()), LW_STATUS_BAD_PARAM);
  EXPECT_TRUE(mentions("too large"));
  for (float v : y) EXPECT_EQ(v, 7.0f);  // untouched
  LW_OK(lwNetworkForward(net, 0, nullptr, nullptr));  // an empty batch is valid
}

}  // namespace
