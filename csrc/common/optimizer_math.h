// optimizer_math.h -- the update formula of every lwOptimizerMode_t, written once.
//
// The CPU reference loop, the CPU vector bodies (GCC vector types, csrc/cpu/simd/
// optimizer.h), the fused dense-layer kernels and the CUDA kernels all call the
// *_rule functions below. Each is a template over the value type V (a scalar T,
// or a vector of T whose arithmetic operators broadcast T) and takes the square
// root as a callable, since vector types have no std::sqrt overload. The
// formulas and their torch.optim origin are documented in layerwise.h.
//
// Per-call constants (bias corrections, decayed learning rates) depend only on
// the hyperparameters and the step number: optimizer_coefficients() computes
// them once on the host in double, as torch.optim does in Python floats, and
// kernels cast them to the tensor's dtype.
#pragma once

#include <cmath>
#include <cstdint>

#include "layerwise/layerwise.h"

// The project's host-device marker (same definition as activation_math.h's).
#ifndef LW_HD
#if defined(__CUDACC__)
#define LW_HD __host__ __device__ __forceinline__
#else
#define LW_HD inline
#endif
#endif

namespace lw {

// Everything a kernel needs for one step of one mode, in the tensor's dtype T.
// Fields a mode does not use are zero.
template <typename T>
struct OptimizerCoefficients {
  T lr;            // SGD, RMSPROP: learning rate
  T momentum;      // SGD, RMSPROP
  T weight_decay;  // coupled L2 term (SGD, ADAM, RMSPROP, ADAGRAD); 0 for ADAMW
  T decay_factor;  // ADAMW: 1 - lr * weight_decay (decoupled decay); 1 otherwise
  T one_minus_beta1, beta2, one_minus_beta2;  // ADAM, ADAMW
  T step_size;     // ADAM, ADAMW: lr / (1 - beta1^s);  ADAGRAD: lr / (1 + (s - 1) lr_decay)
  T bias_correction2_sqrt;  // ADAM, ADAMW: sqrt(1 - beta2^s)
  T alpha, one_minus_alpha;  // RMSPROP
  T eps;
  bool use_momentum;  // SGD: momentum != 0;  RMSPROP: momentum > 0
  bool nesterov;      // SGD
  bool centered;      // RMSPROP
  bool decoupled;     // ADAMW
};

// Everything below has internal linkage (an unnamed namespace): the CPU ISA
// translation units instantiate these templates with AVX2 / AVX-512 flags, and
// with external linkage the linker could keep such a copy for generic code.
namespace {

// The coefficients of step number s = t + 1 (host only; double like torch's Python floats).
inline OptimizerCoefficients<double> optimizer_coefficients(lwOptimizerMode_t mode,
                                                            const lwOptimizerParams_t &p, int64_t t) {
  OptimizerCoefficients<double> c{};
  const double s = (double)t + 1.0;
  c.decay_factor = 1.0;
  c.eps = p.eps;
  switch (mode) {
    case LW_OPTIMIZER_SGD:
      c.lr = p.lr;
      c.momentum = p.momentum;
      c.weight_decay = p.weight_decay;
      c.use_momentum = p.momentum != 0.0;
      c.nesterov = p.nesterov != 0;
      c.eps = 0.0;
      break;
    case LW_OPTIMIZER_ADAM:
    case LW_OPTIMIZER_ADAMW:
      c.decoupled = mode == LW_OPTIMIZER_ADAMW;
      c.weight_decay = c.decoupled ? 0.0 : p.weight_decay;
      c.decay_factor = c.decoupled ? 1.0 - p.lr * p.weight_decay : 1.0;
      c.one_minus_beta1 = 1.0 - p.beta1;
      c.beta2 = p.beta2;
      c.one_minus_beta2 = 1.0 - p.beta2;
      c.step_size = p.lr / (1.0 - std::pow(p.beta1, s));
      c.bias_correction2_sqrt = std::sqrt(1.0 - std::pow(p.beta2, s));
      break;
    case LW_OPTIMIZER_RMSPROP:
      c.lr = p.lr;
      c.momentum = p.momentum;
      c.weight_decay = p.weight_decay;
      c.use_momentum = p.momentum > 0.0;
      c.centered = p.centered != 0;
      c.alpha = p.alpha;
      c.one_minus_alpha = 1.0 - p.alpha;
      break;
    case LW_OPTIMIZER_ADAGRAD:
      c.weight_decay = p.weight_decay;
      c.step_size = p.lr / (1.0 + (s - 1.0) * p.lr_decay);
      break;
  }
  return c;
}

template <typename T>
OptimizerCoefficients<T> cast_coefficients(const OptimizerCoefficients<double> &c) {
  OptimizerCoefficients<T> r;
  r.lr = (T)c.lr;
  r.momentum = (T)c.momentum;
  r.weight_decay = (T)c.weight_decay;
  r.decay_factor = (T)c.decay_factor;
  r.one_minus_beta1 = (T)c.one_minus_beta1;
  r.beta2 = (T)c.beta2;
  r.one_minus_beta2 = (T)c.one_minus_beta2;
  r.step_size = (T)c.step_size;
  r.bias_correction2_sqrt = (T)c.bias_correction2_sqrt;
  r.alpha = (T)c.alpha;
  r.one_minus_alpha = (T)c.one_minus_alpha;
  r.eps = (T)c.eps;
  r.use_momentum = c.use_momentum;
  r.nesterov = c.nesterov;
  r.centered = c.centered;
  r.decoupled = c.decoupled;
  return r;
}

// Number of state buffers per tensor (see lwGetOptimizerStateCount).
inline int optimizer_state_count(lwOptimizerMode_t mode, const lwOptimizerParams_t &p) {
  switch (mode) {
    case LW_OPTIMIZER_SGD: return p.momentum != 0.0 ? 1 : 0;
    case LW_OPTIMIZER_ADAM:
    case LW_OPTIMIZER_ADAMW: return 2;
    case LW_OPTIMIZER_RMSPROP: return 1 + (p.momentum > 0.0 ? 1 : 0) + (p.centered ? 1 : 0);
    case LW_OPTIMIZER_ADAGRAD: return 1;
  }
  return 0;
}

// The square root used by scalar callers (host and device).
struct ScalarSqrt {
  template <typename T>
  LW_HD T operator()(T x) const {
    using std::sqrt;
    return sqrt(x);
  }
};

// ---- the update formulas (p: parameter, g: gradient, state by reference) ----

// SGD: buf is read and written only when c.use_momentum.
template <typename V, typename T>
LW_HD void sgd_rule(V &p, V g, V &buf, const OptimizerCoefficients<T> &c) {
  g = g + c.weight_decay * p;
  if (c.use_momentum) {
    buf = c.momentum * buf + g;
    g = c.nesterov ? g + c.momentum * buf : buf;
  }
  p = p - c.lr * g;
}

// ADAM and ADAMW (c.decoupled): m = exp_avg, v = exp_avg_sq.
template <typename V, typename T, typename Sqrt>
LW_HD void adam_rule(V &p, V g, V &m, V &v, const OptimizerCoefficients<T> &c, Sqrt sqrt_of) {
  if (c.decoupled) p = p * c.decay_factor;
  else g = g + c.weight_decay * p;
  m = m + c.one_minus_beta1 * (g - m);
  v = c.beta2 * v + c.one_minus_beta2 * (g * g);
  const V denom = sqrt_of(v) / c.bias_correction2_sqrt + c.eps;
  p = p - c.step_size * (m / denom);
}

// RMSPROP: sq = square_avg; buf = momentum_buffer (used when c.use_momentum);
// ga = grad_avg (used when c.centered).
template <typename V, typename T, typename Sqrt>
LW_HD void rmsprop_rule(V &p, V g, V &sq, V &buf, V &ga, const OptimizerCoefficients<T> &c,
                              Sqrt sqrt_of) {
  g = g + c.weight_decay * p;
  sq = c.alpha * sq + c.one_minus_alpha * (g * g);
  V denom;
  if (c.centered) {
    ga = ga + c.one_minus_alpha * (g - ga);
    denom = sqrt_of(sq - ga * ga) + c.eps;
  } else {
    denom = sqrt_of(sq) + c.eps;
  }
  if (c.use_momentum) {
    buf = c.momentum * buf + g / denom;
    p = p - c.lr * buf;
  } else {
    p = p - c.lr * (g / denom);
  }
}

// ADAGRAD: sum = the accumulated squared gradients.
template <typename V, typename T, typename Sqrt>
LW_HD void adagrad_rule(V &p, V g, V &sum, const OptimizerCoefficients<T> &c, Sqrt sqrt_of) {
  g = g + c.weight_decay * p;
  sum = sum + g * g;
  p = p - c.step_size * (g / (sqrt_of(sum) + c.eps));
}

// One element (or vector) step of `mode` with the state buffers in the order of
// layerwise.h (s[0..count)). Unused entries of s are neither read nor written.
template <lwOptimizerMode_t Mode, typename V, typename T, typename Sqrt>
LW_HD void optimizer_rule(V &p, V g, V *s, const OptimizerCoefficients<T> &c, Sqrt sqrt_of) {
  if (Mode == LW_OPTIMIZER_SGD) {
    sgd_rule(p, g, s[0], c);
  } else if (Mode == LW_OPTIMIZER_ADAM || Mode == LW_OPTIMIZER_ADAMW) {
    adam_rule(p, g, s[0], s[1], c, sqrt_of);
  } else if (Mode == LW_OPTIMIZER_RMSPROP) {
    V &buf = s[1];
    V &ga = s[c.use_momentum ? 2 : 1];
    rmsprop_rule(p, g, s[0], buf, ga, c, sqrt_of);
  } else {
    adagrad_rule(p, g, s[0], c, sqrt_of);
  }
}

}  // namespace
}  // namespace lw
