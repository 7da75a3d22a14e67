// test_rbf.cpp -- lwRbfForward / lwRbfBackward on CPU handles: results against
// plain double loops (with alpha/beta blending and row strides), gradients
// against central finite differences of the forward call, and BAD_PARAM paths
// that name the argument and leave the output untouched.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "capi_testing.h"
#include "layerwise/layerwise.h"

namespace {

using lw_test::Desc;

class Rbf : public lw_test::CpuHandleTest {};

std::vector<double> uniform(size_t n, unsigned seed, double lo, double hi) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(n);
  for (auto &x : v) x = dist(gen);
  return v;
}

// exp(-gamma_j ||x_i - c_j||^2) in double, x with row stride ldx.
std::vector<double> reference(const std::vector<double> &x, int64_t ldx, const std::vector<double> &c,
                              const std::vector<double> &g, int64_t n, int64_t in, int64_t units) {
  std::vector<double> y(n * units);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < units; ++j) {
      double d = 0;
      for (int64_t k = 0; k < in; ++k) d += (x[i * ldx + k] - c[j * in + k]) * (x[i * ldx + k] - c[j * in + k]);
      y[i * units + j] = std::exp(-g[j] * d);
    }
  return y;
}

TEST_F(Rbf, ForwardMatchesLoopsWithStridesAndBlending) {
  for (auto [n, in, units] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1}, {7, 13, 5}, {33, 70, 19}}) {
    const int64_t ldx = in + 3;
    auto x = uniform(n * ldx, 1, 0, 1), c = uniform(units * in, 2, 0, 1), g = uniform(units, 3, 0.1, 2);
    auto want = reference(x, ldx, c, g, n, in, units);
    Desc xd(LW_FLOAT64, n, in, ldx), cd(LW_FLOAT64, units, in), gd(LW_FLOAT64, 1, units),
        yd(LW_FLOAT64, n, units);
    std::vector<double> y(n * units, 0.5);
    LW_OK(lwRbfForward(h, 2.0, xd, x.data(), cd, c.data(), gd, g.data(), -1.0, yd, y.data()));
    for (int64_t i = 0; i < n * units; ++i) EXPECT_NEAR(y[i], 2.0 * want[i] - 0.5, 1e-12) << i;
    std::vector<float> xf(x.begin(), x.end()), cf(c.begin(), c.end()), gf(g.begin(), g.end()),
        yf(n * units);
    Desc xf_d(LW_FLOAT32, n, in, ldx), cf_d(LW_FLOAT32, units, in), gf_d(LW_FLOAT32, 1, units),
        yf_d(LW_FLOAT32, n, units);
    LW_OK(lwRbfForward(h, 1.0, xf_d, xf.data(), cf_d, cf.data(), gf_d, gf.data(), 0.0, yf_d, yf.data()));
    for (int64_t i = 0; i < n * units; ++i) EXPECT_NEAR(yf[i], want[i], 2e-5) << i;
  }
}

TEST_F(Rbf, PointOnACenterGivesExactlyOne) {
  // ||x||^2 - 2 x.c + ||c||^2 cancels to about -1e-16 here; the clamp keeps y <= 1.
  std::vector<double> c = {0.1, 0.7, 0.3}, g = {5.0};
  Desc xd(LW_FLOAT64, 1, 3), cd(LW_FLOAT64, 1, 3), gd(LW_FLOAT64, 1, 1), yd(LW_FLOAT64, 1, 1);
  double y = 0;
  LW_OK(lwRbfForward(h, 1.0, xd, c.data(), cd, c.data(), gd, g.data(), 0.0, yd, &y));
  EXPECT_LE(y, 1.0);
  EXPECT_NEAR(y, 1.0, 1e-14);
}

TEST_F(Rbf, BackwardMatchesFiniteDifferences) {
  const int64_t n = 5, in = 4, units = 3;
  auto x = uniform(n * in, 4, 0, 1), c = uniform(units * in, 5, 0, 1), g = uniform(units, 6, 0.5, 2);
  auto w = uniform(n * units, 7, -1, 1);  // L = sum w * y, so dy = w
  Desc xd(LW_FLOAT64, n, in), cd(LW_FLOAT64, units, in), gd(LW_FLOAT64, 1, units),
      yd(LW_FLOAT64, n, units);
  auto loss = [&](const std::vector<double> &xx, const std::vector<double> &cc, const std::vector<double> &gg) {
    std::vector<double> y(n * units);
    EXPECT_EQ(lwRbfForward(h, 1.0, xd, xx.data(), cd, cc.data(), gd, gg.data(), 0.0, yd, y.data()),
              LW_STATUS_SUCCESS);
    double s = 0;
    for (int64_t i = 0; i < n * units; ++i) s += w[i] * y[i];
    return s;
  };
  std::vector<double> y(n * units);
  LW_OK(lwRbfForward(h, 1.0, xd, x.data(), cd, c.data(), gd, g.data(), 0.0, yd, y.data()));
  std::vector<double> dx(n * in, 1.0), dc(units * in, 1.0), dg(units, 1.0);
  Desc dxd(LW_FLOAT64, n, in), dcd(LW_FLOAT64, units, in), dgd(LW_FLOAT64, 1, units);
  // alpha 1, beta 0.5: gradient + half the old value (1.0)
  LW_OK(lwRbfBackward(h, 1.0, xd, x.data(), cd, c.data(), gd, g.data(), yd, y.data(), yd, w.data(), 0.5,
                      dxd, dx.data(), dcd, dc.data(), dgd, dg.data()));
  const double e = 1e-6;
  auto fd = [&](std::vector<double> &v, size_t k, auto f) {
    const double old = v[k];
    v[k] = old + e;
    const double lp = f();
    v[k] = old - e;
    const double lm = f();
    v[k] = old;
    return (lp - lm) / (2 * e);
  };
  auto L = [&] { return loss(x, c, g); };
  for (size_t k = 0; k < x.size(); ++k) EXPECT_NEAR(dx[k] - 0.5, fd(x, k, L), 1e-7) << "dx " << k;
  for (size_t k = 0; k < c.size(); ++k) EXPECT_NEAR(dc[k] - 0.5, fd(c, k, L), 1e-7) << "dc " << k;
  for (size_t k = 0; k < g.size(); ++k) EXPECT_NEAR(dg[k] - 0.5, fd(g, k, L), 1e-7) << "dgamma " << k;
  // each output is optional
  std::vector<double> dg_only(units, 0.0);
  LW_OK(lwRbfBackward(h, 1.0, xd, x.data(), cd, c.data(), gd, g.data(), yd, y.data(), yd, w.data(), 0.0,
                      nullptr, nullptr, nullptr, nullptr, dgd, dg_only.data()));
  for (int64_t j = 0; j < units; ++j) EXPECT_NEAR(dg_only[j], dg[j] - 0.5, 1e-14);
}

TEST_F(Rbf, EmptyBatchScalesParameterGradientsByBeta) {
  std::vector<double> c = {1, 2}, g = {1}, dc = {4, 6}, dg = {8};
  Desc xd(LW_FLOAT64, 0, 2), cd(LW_FLOAT64, 1, 2), gd(LW_FLOAT64, 1, 1), yd(LW_FLOAT64, 0, 1);
  Desc dcd(LW_FLOAT64, 1, 2), dgd(LW_FLOAT64, 1, 1);
  LW_OK(lwRbfBackward(h, 1.0, xd, nullptr, cd, c.data(), gd, g.data(), yd, nullptr, yd, nullptr, 0.5,
                      nullptr, nullptr, dcd, dc.data(), dgd, dg.data()));
  EXPECT_DOUBLE_EQ(dc[0], 2);
  EXPECT_DOUBLE_EQ(dc[1], 3);
  EXPECT_DOUBLE_EQ(dg[0], 4);
}

TEST_F(Rbf, BadParamsNameTheArgumentAndLeaveOutputUntouched) {
  std::vector<double> x(6, 0.5), c(6, 0.25), g(2, 1.0), y(6, 7.0);
  Desc xd(LW_FLOAT64, 3, 2), cd(LW_FLOAT64, 2, 3), cgood(LW_FLOAT64, 2, 2), gd(LW_FLOAT64, 1, 2),
      gbad(LW_FLOAT64, 1, 3), yd(LW_FLOAT64, 3, 2), ybad(LW_FLOAT64, 3, 3), yf(LW_FLOAT32, 3, 2);
  Desc unset;
  auto expect_bad = [&](lwStatus_t st, const char *word) {
    EXPECT_EQ(st, LW_STATUS_BAD_PARAM);
    EXPECT_NE(std::strstr(lwGetLastErrorMessage(), word), nullptr) << lwGetLastErrorMessage();
    for (double v : y) EXPECT_EQ(v, 7.0);
  };
  expect_bad(lwRbfForward(nullptr, 1, xd, x.data(), cgood, c.data(), gd, g.data(), 0, yd, y.data()), "handle");
  expect_bad(lwRbfForward(h, 1, xd, x.data(), cd, c.data(), gd, g.data(), 0, yd, y.data()), "centers");
  expect_bad(lwRbfForward(h, 1, xd, x.data(), cgood, nullptr, gd, g.data(), 0, yd, y.data()), "centers");
  expect_bad(lwRbfForward(h, 1, xd, x.data(), cgood, c.data(), gbad, g.data(), 0, yd, y.data()), "gamma");
  expect_bad(lwRbfForward(h, 1, xd, x.data(), cgood, c.data(), gd, nullptr, 0, yd, y.data()), "gamma");
  expect_bad(lwRbfForward(h, 1, xd, x.data(), cgood, c.data(), gd, g.data(), 0, ybad, y.data()), "y");
  expect_bad(lwRbfForward(h, 1, xd, x.data(), cgood, c.data(), gd, g.data(), 0, yf, y.data()), "y");
  expect_bad(lwRbfForward(h, 1, unset, x.data(), cgood, c.data(), gd, g.data(), 0, yd, y.data()), "x");
  expect_bad(lwRbfForward(h, NAN, xd, x.data(), cgood, c.data(), gd, g.data(), 0, yd, y.data()), "alpha");
  std::vector<double> dy(6, 1.0);
  Desc dxd(LW_FLOAT64, 3, 2), dxbad(LW_FLOAT64, 2, 2), dgbad(LW_FLOAT64, 1, 1);
  expect_bad(lwRbfBackward(h, 1, xd, x.data(), cgood, c.data(), gd, g.data(), yd, y.data(), ybad, dy.data(),
                           0, dxd, y.data(), nullptr, nullptr, nullptr, nullptr), "dy");
  expect_bad(lwRbfBackward(h, 1, xd, x.data(), cgood, c.data(), gd, g.data(), yd, y.data(), yd, dy.data(),
                           0, dxbad, y.data(), nullptr, nullptr, nullptr, nullptr), "dx");
  expect_bad(lwRbfBackward(h, 1, xd, x.data(), cgood, c.data(), gd, g.data(), yd, y.data(), yd, dy.data(),
                           0, dxd, nullptr, nullptr, nullptr, nullptr, nullptr), "dx");
  expect_bad(lwRbfBackward(h, 1, xd, x.data(), cgood, c.data(), gd, g.data(), yd, y.data(), yd, dy.data(),
                           0, nullptr, nullptr, nullptr, nullptr, dgbad, y.data()), "dgamma");
}

}  // namespace
