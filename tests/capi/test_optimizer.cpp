// test_optimizer.cpp -- the optimizer descriptor API on CPU handles: torch's
// defaults, validation (BAD_PARAM naming the field, descriptor unchanged), state
// counts, lwOptimizerStep of every mode against plain double loops over several
// steps (strided tensors, float32 and float64), and lwLinearBackwardUpdate
// against the unfused gradient + step.
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

struct Opt {
  lwOptimizerDescriptor_t o = nullptr;
  Opt() { lwCreateOptimizerDescriptor(&o); }
  ~Opt() { lwDestroyOptimizerDescriptor(o); }
  operator lwOptimizerDescriptor_t() const { return o; }
};

class COpt : public lw_test::CpuHandleTest {};

bool mentions(const char *word) { return std::strstr(lwGetLastErrorMessage(), word) != nullptr; }

std::vector<double> randn(size_t n, unsigned seed, double scale = 1.0) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> dist(0.0, scale);
  std::vector<double> v(n);
  for (auto &x : v) x = dist(gen);
  return v;
}

lwOptimizerParams_t defaults(lwOptimizerMode_t mode) {
  lwOptimizerParams_t p;
  std::memset(&p, 0xff, sizeof p);  // every field must be written
  EXPECT_EQ(lwOptimizerParamsDefault(mode, &p), LW_STATUS_SUCCESS);
  return p;
}

// The formulas of layerwise.h on one element, in double, written out per mode.
// s: step number (t + 1); st: the state in the header's order.
void reference_step(lwOptimizerMode_t mode, const lwOptimizerParams_t &h, int64_t s, double &p, double g,
                    double *st) {
  switch (mode) {
    case LW_OPTIMIZER_SGD: {
      g += h.weight_decay * p;
      if (h.momentum != 0) {
        st[0] = h.momentum * st[0] + g;
        g = h.nesterov ? g + h.momentum * st[0] : st[0];
      }
      p -= h.lr * g;
      break;
    }
    case LW_OPTIMIZER_ADAM:
    case LW_OPTIMIZER_ADAMW: {
      if (mode == LW_OPTIMIZER_ADAMW) p *= 1 - h.lr * h.weight_decay;
      else g += h.weight_decay * p;
      st[0] = h.beta1 * st[0] + (1 - h.beta1) * g;
      st[1] = h.beta2 * st[1] + (1 - h.beta2) * g * g;
      const double mhat = st[0] / (1 - std::pow(h.beta1, (double)s));
      const double vhat = st[1] / (1 - std::pow(h.beta2, (double)s));
      p -= h.lr * mhat / (std::sqrt(vhat) + h.eps);
      break;
    }
    case LW_OPTIMIZER_RMSPROP: {
      g += h.weight_decay * p;
      st[0] = h.alpha * st[0] + (1 - h.alpha) * g * g;
      const int ga = h.momentum > 0 ? 2 : 1;
      double d;
      if (h.centered) {
        st[ga] = h.alpha * st[ga] + (1 - h.alpha) * g;
        d = std::sqrt(st[0] - st[ga] * st[ga]) + h.eps;
      } else {
        d = std::sqrt(st[0]) + h.eps;
      }
      if (h.momentum > 0) {
        st[1] = h.momentum * st[1] + g / d;
        p -= h.lr * st[1];
      } else {
        p -= h.lr * g / d;
      }
      break;
    }
    case LW_OPTIMIZER_ADAGRAD: {
      g += h.weight_decay * p;
      st[0] += g * g;
      p -= h.lr / (1 + (double)(s - 1) * h.lr_decay) * g / (std::sqrt(st[0]) + h.eps);
      break;
    }
  }
}

// Runs `steps` steps of (mode, h) on a strided (rows, cols, ld) tensor of dtype T
// and compares param and state with the double reference.
template <typename T>
void check_mode(lwHandle_t handle, lwOptimizerMode_t mode, const lwOptimizerParams_t &h, int64_t rows,
                int64_t cols, int64_t ld, int steps, double tol) {
  const lwDataType_t dt = sizeof(T) == 4 ? LW_FLOAT32 : LW_FLOAT64;
  Opt o;
  ASSERT_EQ(lwSetOptimizerDescriptor(o, mode, &h), LW_STATUS_SUCCESS) << lwGetLastErrorMessage();
  int count = -1;
  LW_OK(lwGetOptimizerStateCount(o, &count));
  const size_t n = (size_t)(rows * ld);
  const std::vector<double> p0 = randn(n, 1);
  std::vector<T> p(p0.begin(), p0.end()), g(n);
  std::vector<double> pr = p0;
  const double init = mode == LW_OPTIMIZER_ADAGRAD ? h.initial_accumulator_value : 0.0;
  std::vector<std::vector<T>> st(count, std::vector<T>(n, (T)init));
  std::vector<std::vector<double>> str(3, std::vector<double>(n, init));
  std::vector<void *> ptrs;
  for (auto &s : st) ptrs.push_back(s.data());
  Desc d(dt, rows, cols, ld);
  for (int step = 0; step < steps; ++step) {
    const std::vector<double> gd = randn(n, 100 + step);
    for (size_t i = 0; i < n; ++i) g[i] = (T)gd[i];
    LW_OK(lwOptimizerStep(handle, o, d, p.data(), g.data(), ptrs.empty() ? nullptr : ptrs.data()));
    LW_OK(lwOptimizerAdvanceStep(o));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        const size_t i = (size_t)(r * ld + c);
        double s3[3] = {str[0][i], str[1][i], str[2][i]};
        reference_step(mode, h, step + 1, pr[i], (double)g[i], s3);
        for (int k = 0; k < 3; ++k) str[k][i] = s3[k];
      }
  }
  int64_t t = -1;
  LW_OK(lwGetOptimizerStepCount(o, &t));
  EXPECT_EQ(t, steps);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < ld; ++c) {
      const size_t i = (size_t)(r * ld + c);
      if (c >= cols) {  // the gap between rows is never touched
        EXPECT_EQ((double)p[i], (double)(T)p0[i]) << "gap at " << i;
        continue;
      }
      EXPECT_NEAR((double)p[i], pr[i], tol * (1 + std::fabs(pr[i]))) << "param " << i;
      for (int k = 0; k < count; ++k)
        EXPECT_NEAR((double)st[k][i], str[k][i], tol * (1 + std::fabs(str[k][i]))) << "state " << k << " at " << i;
    }
}

TEST(COptimizerDescriptor, DefaultsAreTorchs) {
  lwOptimizerParams_t p = defaults(LW_OPTIMIZER_SGD);
  EXPECT_EQ(p.lr, 1e-3);
  EXPECT_EQ(p.momentum, 0.0);
  EXPECT_EQ(p.nesterov, 0);
  p = defaults(LW_OPTIMIZER_ADAM);
  EXPECT_EQ(p.lr, 1e-3);
  EXPECT_EQ(p.beta1, 0.9);
  EXPECT_EQ(p.beta2, 0.999);
  EXPECT_EQ(p.eps, 1e-8);
  EXPECT_EQ(p.weight_decay, 0.0);
  p = defaults(LW_OPTIMIZER_ADAMW);
  EXPECT_EQ(p.weight_decay, 1e-2);
  p = defaults(LW_OPTIMIZER_RMSPROP);
  EXPECT_EQ(p.lr, 1e-2);
  EXPECT_EQ(p.alpha, 0.99);
  EXPECT_EQ(p.eps, 1e-8);
  EXPECT_EQ(p.centered, 0);
  p = defaults(LW_OPTIMIZER_ADAGRAD);
  EXPECT_EQ(p.lr, 1e-2);
  EXPECT_EQ(p.eps, 1e-10);
  EXPECT_EQ(p.lr_decay, 0.0);
  EXPECT_EQ(p.initial_accumulator_value, 0.0);
  EXPECT_EQ(lwOptimizerParamsDefault((lwOptimizerMode_t)9, &p), LW_STATUS_BAD_PARAM);
  EXPECT_TRUE(mentions("mode"));
  EXPECT_EQ(lwOptimizerParamsDefault(LW_OPTIMIZER_ADAM, nullptr), LW_STATUS_BAD_PARAM);
  EXPECT_TRUE(mentions("params"));
}

TEST(COptimizerDescriptor, LifecycleStepCountAndStateCount) {
  lwOptimizerDescriptor_t o = nullptr;
  EXPECT_EQ(lwCreateOptimizerDescriptor(nullptr), LW_STATUS_BAD_PARAM);
  LW_OK(lwCreateOptimizerDescriptor(&o));
  lwOptimizerMode_t mode = (lwOptimizerMode_t)-1;
  lwOptimizerParams_t p;
  LW_OK(lwGetOptimizerDescriptor(o, &mode, &p));  // created as SGD with its defaults
  EXPECT_EQ(mode, LW_OPTIMIZER_SGD);
  EXPECT_EQ(p.lr, 1e-3);
  int count = -1;
  LW_OK(lwGetOptimizerStateCount(o, &count));
  EXPECT_EQ(count, 0);
  int64_t t = -1;
  LW_OK(lwGetOptimizerStepCount(o, &t));
  EXPECT_EQ(t, 0);
  LW_OK(lwOptimizerAdvanceStep(o));
  LW_OK(lwOptimizerAdvanceStep(o));
  LW_OK(lwGetOptimizerStepCount(o, &t));
  EXPECT_EQ(t, 2);
  LW_OK(lwSetOptimizerStepCount(o, 41));
  EXPECT_EQ(lwSetOptimizerStepCount(o, -1), LW_STATUS_BAD_PARAM);
  EXPECT_TRUE(mentions("step count"));
  LW_OK(lwGetOptimizerStepCount(o, &t));
  EXPECT_EQ(t, 41);

  struct Case {
    lwOptimizerMode_t mode;
    double momentum;
    int centered, expected;
  } cases[] = {{LW_OPTIMIZER_SGD, 0.0, 0, 0},     {LW_OPTIMIZER_SGD, 0.9, 0, 1},
               {LW_OPTIMIZER_ADAM, 0.0, 0, 2},    {LW_OPTIMIZER_ADAMW, 0.0, 0, 2},
               {LW_OPTIMIZER_RMSPROP, 0.0, 0, 1}, {LW_OPTIMIZER_RMSPROP, 0.5, 0, 2},
               {LW_OPTIMIZER_RMSPROP, 0.0, 1, 2}, {LW_OPTIMIZER_RMSPROP, 0.5, 1, 3},
               {LW_OPTIMIZER_ADAGRAD, 0.0, 0, 1}};
  for (const Case &c : cases) {
    p = defaults(c.mode);
    p.momentum = c.momentum;
    p.centered = c.centered;
    LW_OK(lwSetOptimizerDescriptor(o, c.mode, &p));
    LW_OK(lwGetOptimizerStateCount(o, &count));
    EXPECT_EQ(count, c.expected) << "mode " << c.mode << " momentum " << c.momentum << " centered " << c.centered;
  }
  LW_OK(lwGetOptimizerStepCount(o, &t));
  EXPECT_EQ(t, 41);  // setting the mode keeps the count
  LW_OK(lwGetOptimizerDescriptor(o, nullptr, nullptr));
  EXPECT_EQ(lwGetOptimizerStateCount(o, nullptr), LW_STATUS_BAD_PARAM);
  EXPECT_EQ(lwGetOptimizerStepCount(o, nullptr), LW_STATUS_BAD_PARAM);
  LW_OK(lwDestroyOptimizerDescriptor(o));
  EXPECT_EQ(lwDestroyOptimizerDescriptor(nullptr), LW_STATUS_BAD_PARAM);
  EXPECT_EQ(lwOptimizerAdvanceStep(nullptr), LW_STATUS_BAD_PARAM);
  EXPECT_TRUE(mentions("opt"));
}

TEST(COptimizerDescriptor, SetRejectsBadHyperparametersAndKeepsTheOldOnes) {
  Opt o;
  lwOptimizerParams_t good = defaults(LW_OPTIMIZER_ADAM);
  LW_OK(lwSetOptimizerDescriptor(o, LW_OPTIMIZER_ADAM, &good));
  struct Case {
    lwOptimizerMode_t mode;
    const char *field;
    void (*spoil)(lwOptimizerParams_t &);
  } cases[] = {
      {LW_OPTIMIZER_SGD, "lr", [](lwOptimizerParams_t &p) { p.lr = -1; }},
      {LW_OPTIMIZER_SGD, "lr", [](lwOptimizerParams_t &p) { p.lr = NAN; }},
      {LW_OPTIMIZER_SGD, "momentum", [](lwOptimizerParams_t &p) { p.momentum = -0.5; }},
      {LW_OPTIMIZER_SGD, "weight_decay", [](lwOptimizerParams_t &p) { p.weight_decay = INFINITY; }},
      {LW_OPTIMIZER_SGD, "nesterov", [](lwOptimizerParams_t &p) { p.nesterov = 1; }},  // momentum 0
      {LW_OPTIMIZER_SGD, "nesterov", [](lwOptimizerParams_t &p) { p.momentum = 0.9; p.nesterov = 2; }},
      {LW_OPTIMIZER_ADAM, "beta1", [](lwOptimizerParams_t &p) { p.beta1 = 1.0; }},
      {LW_OPTIMIZER_ADAM, "beta2", [](lwOptimizerParams_t &p) { p.beta2 = -0.1; }},
      {LW_OPTIMIZER_ADAMW, "eps", [](lwOptimizerParams_t &p) { p.eps = -1e-8; }},
      {LW_OPTIMIZER_ADAMW, "weight_decay", [](lwOptimizerParams_t &p) { p.weight_decay = -0.01; }},
      {LW_OPTIMIZER_RMSPROP, "alpha", [](lwOptimizerParams_t &p) { p.alpha = NAN; }},
      {LW_OPTIMIZER_RMSPROP, "centered", [](lwOptimizerParams_t &p) { p.centered = 3; }},
      {LW_OPTIMIZER_RMSPROP, "momentum", [](lwOptimizerParams_t &p) { p.momentum = -1; }},
      {LW_OPTIMIZER_ADAGRAD, "lr_decay", [](lwOptimizerParams_t &p) { p.lr_decay = -1; }},
      {LW_OPTIMIZER_ADAGRAD, "initial_accumulator_value",
       [](lwOptimizerParams_t &p) { p.initial_accumulator_value = -1; }},
  };
  for (const Case &c : cases) {
    lwOptimizerParams_t p = defaults(c.mode);
    c.spoil(p);
    EXPECT_EQ(lwSetOptimizerDescriptor(o, c.mode, &p), LW_STATUS_BAD_PARAM) << c.field;
    EXPECT_TRUE(mentions(c.field)) << c.field << ": " << lwGetLastErrorMessage();
    lwOptimizerMode_t mode;
    lwOptimizerParams_t now;
    LW_OK(lwGetOptimizerDescriptor(o, &mode, &now));
    EXPECT_EQ(mode, LW_OPTIMIZER_ADAM);
    EXPECT_EQ(std::memcmp(&now, &good, sizeof now), 0) << c.field;
  }
  // Fields a mode does not use are ignored.
  lwOptimizerParams_t p = defaults(LW_OPTIMIZER_ADAGRAD);
  p.beta1 = 7;
  p.alpha = -3;
  LW_OK(lwSetOptimizerDescriptor(o, LW_OPTIMIZER_ADAGRAD, &p));
  EXPECT_EQ(lwSetOptimizerDescriptor(o, (lwOptimizerMode_t)5, &p), LW_STATUS_BAD_PARAM);
  EXPECT_TRUE(mentions("mode"));
  EXPECT_EQ(lwSetOptimizerDescriptor(o, LW_OPTIMIZER_SGD, nullptr), LW_STATUS_BAD_PARAM);
  EXPECT_TRUE(mentions("params"));
  EXPECT_EQ(lwSetOptimizerDescriptor(nullptr, LW_OPTIMIZER_SGD, &p), LW_STATUS_BAD_PARAM);
}

TEST_F(COpt, EveryModeMatchesTheDoubleReference) {
  struct Case {
    lwOptimizerMode_t mode;
    void (*tweak)(lwOptimizerParams_t &);
  } cases[] = {
      {LW_OPTIMIZER_SGD, [](lwOptimizerParams_t &p) { p.lr = 0.05; }},
      {LW_OPTIMIZER_SGD, [](lwOptimizerParams_t &p) { p.lr = 0.05; p.momentum = 0.9; p.weight_decay = 0.01; }},
      {LW_OPTIMIZER_SGD, [](lwOptimizerParams_t &p) { p.lr = 0.05; p.momentum = 0.8; p.nesterov = 1; }},
      {LW_OPTIMIZER_ADAM, [](lwOptimizerParams_t &p) { p.lr = 0.01; }},
      {LW_OPTIMIZER_ADAM, [](lwOptimizerParams_t &p) { p.lr = 0.01; p.weight_decay = 0.1; p.beta1 = 0.5; }},
      {LW_OPTIMIZER_ADAMW, [](lwOptimizerParams_t &p) { p.lr = 0.01; p.weight_decay = 0.1; }},
      {LW_OPTIMIZER_RMSPROP, [](lwOptimizerParams_t &) {}},
      {LW_OPTIMIZER_RMSPROP, [](lwOptimizerParams_t &p) { p.momentum = 0.9; p.weight_decay = 0.01; }},
      {LW_OPTIMIZER_RMSPROP, [](lwOptimizerParams_t &p) { p.centered = 1; }},
      {LW_OPTIMIZER_RMSPROP, [](lwOptimizerParams_t &p) { p.centered = 1; p.momentum = 0.5; p.alpha = 0.9; }},
      {LW_OPTIMIZER_ADAGRAD, [](lwOptimizerParams_t &) {}},
      {LW_OPTIMIZER_ADAGRAD, [](lwOptimizerParams_t &p) {
         p.lr_decay = 0.1; p.initial_accumulator_value = 0.5; p.weight_decay = 0.01; }},
  };
  for (const Case &c : cases) {
    lwOptimizerParams_t p = defaults(c.mode);
    c.tweak(p);
    SCOPED_TRACE(testing::Message() << "mode " << c.mode << " momentum " << p.momentum << " centered "
                                    << p.centered);
    check_mode<double>(h, c.mode, p, 7, 13, 16, 20, 1e-11);  // row-strided, odd sizes
    check_mode<double>(h, c.mode, p, 1, 1, 1, 5, 1e-12);
    check_mode<float>(h, c.mode, p, 3, 37, 37, 20, 2e-4);
  }
}

TEST_F(COpt, StepRejectsBadArgumentsBeforeTouchingMemory) {
  Opt o;
  lwOptimizerParams_t p = defaults(LW_OPTIMIZER_ADAM);
  LW_OK(lwSetOptimizerDescriptor(o, LW_OPTIMIZER_ADAM, &p));
  std::vector<double> w(6, 1.0), g(6, 0.5), m(6, 0.0), v(6, 0.0);
  void *state[2] = {m.data(), v.data()};
  void *half[2] = {m.data(), nullptr};
  Desc d(LW_FLOAT64, 2, 3), di(LW_INT32, 2, 3), unset;
  EXPECT_EQ(lwOptimizerStep(nullptr, o, d, w.data(), g.data(), state), LW_STATUS_BAD_PARAM);
  EXPECT_TRUE(mentions("handle"));
  EXPECT_EQ(lwOptimizerStep(h, nullptr, d, w.data(), g.data(), state), LW_STATUS_BAD_PARAM);
  EXPECT_TRUE(mentions("opt"));
  EXPECT_EQ(lwOptimizerStep(h, o, nullptr, w.data(), g.data(), state), LW_STATUS_BAD_PARAM);
  EXPECT_TRUE(mentions("param"));
  EXPECT_EQ(lwOptimizerStep(h, o, unset, w.data(), g.data(), state), LW_STATUS_BAD_PARAM);
  EXPECT_TRUE(mentions("never set"));
  EXPECT_EQ(lwOptimizerStep(h, o, di, w.data(), g.data(), state), LW_STATUS_BAD_PARAM);
  EXPECT_TRUE(mentions("dtype"));
  EXPECT_EQ(lwOptimizerStep(h, o, d, nullptr, g.data(), state), LW_STATUS_BAD_PARAM);
  EXPECT_TRUE(mentions("param"));
  EXPECT_EQ(lwOptimizerStep(h, o, d, w.data(), nullptr, state), LW_STATUS_BAD_PARAM);
  EXPECT_TRUE(mentions("grad"));
  EXPECT_EQ(lwOptimizerStep(h, o, d, w.data(), g.data(), nullptr), LW_STATUS_BAD_PARAM);
  EXPECT_TRUE(mentions("2 state buffers"));
  EXPECT_EQ(lwOptimizerStep(h, o, d, w.data(), g.data(), half), LW_STATUS_BAD_PARAM);
  EXPECT_TRUE(mentions("state[1]"));
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(w[i], 1.0);
    EXPECT_EQ(m[i], 0.0);
    EXPECT_EQ(v[i], 0.0);
  }
  // SGD without momentum needs no state; an empty tensor needs no pointers at all.
  lwOptimizerParams_t s = defaults(LW_OPTIMIZER_SGD);
  LW_OK(lwSetOptimizerDescriptor(o, LW_OPTIMIZER_SGD, &s));
  LW_OK(lwOptimizerStep(h, o, d, w.data(), g.data(), nullptr));
  EXPECT_DOUBLE_EQ(w[0], 1.0 - 1e-3 * 0.5);
  Desc empty(LW_FLOAT64, 0, 3);
  LW_OK(lwSetOptimizerDescriptor(o, LW_OPTIMIZER_ADAM, &p));
  LW_OK(lwOptimizerStep(h, o, empty, nullptr, nullptr, nullptr));
}

// lwLinearBackwardUpdate equals dw = dy^T x, db = sum dy, then lwOptimizerStep on w and b;
// with SGD it equals lwLinearBackwardSgdUpdate.
template <typename T>
void check_linear_update(lwHandle_t h, lwOptimizerMode_t mode, lwOptimizerParams_t p, int64_t t, double tol) {
  const lwDataType_t dt = sizeof(T) == 4 ? LW_FLOAT32 : LW_FLOAT64;
  const int64_t n = 5, in = 11, out = 6, ldw = 13;
  auto cast = [](const std::vector<double> &v) { return std::vector<T>(v.begin(), v.end()); };
  const std::vector<T> dy = cast(randn(n * out, 3)), x = cast(randn(n * in, 4));
  std::vector<T> w1 = cast(randn(out * ldw, 5)), b1 = cast(randn(out, 6));
  std::vector<T> w2 = w1, b2 = b1;
  Opt o;
  LW_OK(lwSetOptimizerDescriptor(o, mode, &p));
  LW_OK(lwSetOptimizerStepCount(o, t));
  int count = 0;
  LW_OK(lwGetOptimizerStateCount(o, &count));
  const double init = mode == LW_OPTIMIZER_ADAGRAD ? p.initial_accumulator_value : 0.0;
  std::vector<std::vector<T>> ws1(count), bs1(count);
  std::vector<void *> wp1, bp1, wp2, bp2;
  for (int k = 0; k < count; ++k) {
    ws1[k] = cast(randn(out * ldw, 10 + k, 0.1));
    bs1[k] = cast(randn(out, 20 + k, 0.1));
    // Square averages are >= 0 and dominate grad_avg^2 (RMSprop centered).
    const double base = init + (k == 0 ? 1.0 : 0.0);
    for (auto &v : ws1[k]) v = (T)(std::fabs((double)v) + base);
    for (auto &v : bs1[k]) v = (T)(std::fabs((double)v) + base);
  }
  auto ws2 = ws1, bs2 = bs1;
  for (int k = 0; k < count; ++k) {
    wp1.push_back(ws1[k].data());
    bp1.push_back(bs1[k].data());
    wp2.push_back(ws2[k].data());
    bp2.push_back(bs2[k].data());
  }
  std::vector<T> dx1(n * in, (T)7), dx2(n * in, (T)7);
  Desc dyd(dt, n, out), xd(dt, n, in), wd(dt, out, in, ldw), bd(dt, 1, out), dxd(dt, n, in);
  LW_OK(lwLinearBackwardUpdate(h, o, dyd, dy.data(), xd, x.data(), wd, w1.data(), count ? wp1.data() : nullptr,
                               bd, b1.data(), count ? bp1.data() : nullptr, dxd, dx1.data()));
  // Unfused: dx with the old w, the gradients, then one step per tensor.
  LW_OK(lwLinearBackwardData(h, 1.0, dyd, dy.data(), wd, w2.data(), 0.0, dxd, dx2.data()));
  std::vector<T> dw(out * ldw, (T)0), db(out);
  LW_OK(lwLinearBackwardWeights(h, 1.0, dyd, dy.data(), xd, x.data(), 0.0, wd, dw.data(), bd, db.data()));
  LW_OK(lwOptimizerStep(h, o, wd, w2.data(), dw.data(), count ? wp2.data() : nullptr));
  LW_OK(lwOptimizerStep(h, o, bd, b2.data(), db.data(), count ? bp2.data() : nullptr));
  int64_t after = -1;
  LW_OK(lwGetOptimizerStepCount(o, &after));
  EXPECT_EQ(after, t);
  for (size_t i = 0; i < dx1.size(); ++i) EXPECT_NEAR((double)dx1[i], (double)dx2[i], tol) << "dx " << i;
  for (int64_t j = 0; j < out; ++j)
    for (int64_t k = 0; k < in; ++k) {
      const size_t i = (size_t)(j * ldw + k);
      EXPECT_NEAR((double)w1[i], (double)w2[i], tol) << "w " << j << "," << k;
      for (int s = 0; s < count; ++s) EXPECT_NEAR((double)ws1[s][i], (double)ws2[s][i], tol) << "w_state " << s;
    }
  for (int64_t j = 0; j < out; ++j) {
    EXPECT_NEAR((double)b1[j], (double)b2[j], tol) << "b " << j;
    for (int s = 0; s < count; ++s) EXPECT_NEAR((double)bs1[s][j], (double)bs2[s][j], tol) << "b_state " << s;
  }
}

TEST_F(COpt, LinearBackwardUpdateEqualsGradientThenStep) {
  for (lwOptimizerMode_t mode : {LW_OPTIMIZER_SGD, LW_OPTIMIZER_ADAM, LW_OPTIMIZER_ADAMW, LW_OPTIMIZER_RMSPROP,
                                 LW_OPTIMIZER_ADAGRAD}) {
    lwOptimizerParams_t p = defaults(mode);
    p.lr = 0.01;
    p.weight_decay = 0.01;
    if (mode == LW_OPTIMIZER_SGD || mode == LW_OPTIMIZER_RMSPROP) p.momentum = 0.9;
    if (mode == LW_OPTIMIZER_RMSPROP) p.centered = 1;
    if (mode == LW_OPTIMIZER_ADAGRAD) p.lr_decay = 0.05;
    SCOPED_TRACE(testing::Message() << "mode " << mode);
    check_linear_update<double>(h, mode, p, 3, 1e-12);
    check_linear_update<float>(h, mode, p, 0, 2e-5);
  }
}

TEST_F(COpt, LinearBackwardUpdateValidates) {
  Opt o;
  lwOptimizerParams_t p = defaults(LW_OPTIMIZER_RMSPROP);
  p.momentum = 0.5;
  LW_OK(lwSetOptimizerDescriptor(o, LW_OPTIMIZER_RMSPROP, &p));
  std::vector<double> dy(2 * 3, 1.0), x(2 * 4, 1.0), w(3 * 4, 1.0), b(3, 1.0), s0(12), s1(12), c0(3), c1(3);
  void *ws[2] = {s0.data(), s1.data()}, *bs[2] = {c0.data(), c1.data()}, *bs_bad[2] = {c0.data(), nullptr};
  Desc dyd(LW_FLOAT64, 2, 3), xd(LW_FLOAT64, 2, 4), wd(LW_FLOAT64, 3, 4), bd(LW_FLOAT64, 1, 3),
      wrong(LW_FLOAT64, 4, 3);
  EXPECT_EQ(lwLinearBackwardUpdate(h, nullptr, dyd, dy.data(), xd, x.data(), wd, w.data(), ws, bd, b.data(), bs,
                                   nullptr, nullptr),
            LW_STATUS_BAD_PARAM);
  EXPECT_TRUE(mentions("opt"));
  EXPECT_EQ(lwLinearBackwardUpdate(h, o, dyd, dy.data(), xd, x.data(), wd, w.data(), nullptr, bd, b.data(), bs,
                                   nullptr, nullptr),
            LW_STATUS_BAD_PARAM);
  EXPECT_TRUE(mentions("w_state"));
  EXPECT_EQ(lwLinearBackwardUpdate(h, o, dyd, dy.data(), xd, x.data(), wd, w.data(), ws, bd, b.data(), bs_bad,
                                   nullptr, nullptr),
            LW_STATUS_BAD_PARAM);
  EXPECT_TRUE(mentions("b_state[1]"));
  EXPECT_EQ(lwLinearBackwardUpdate(h, o, dyd, dy.data(), xd, x.data(), wrong, w.data(), ws, bd, b.data(), bs,
                                   nullptr, nullptr),
            LW_STATUS_BAD_PARAM);
  EXPECT_TRUE(mentions("w: expected shape"));
  for (double v : w) EXPECT_EQ(v, 1.0);
  for (double v : s0) EXPECT_EQ(v, 0.0);
  LW_OK(lwLinearBackwardUpdate(h, o, dyd, dy.data(), xd, x.data(), wd, w.data(), ws, nullptr, nullptr, nullptr,
                               nullptr, nullptr));
  for (double v : b) EXPECT_EQ(v, 1.0);  // no bias given: untouched
  EXPECT_LT(w[0], 1.0);
}

}  // namespace
