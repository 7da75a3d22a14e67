// activation_math.h -- scalar activation functions and their derivatives,
// shared by every backend as the definition of each lwActivationMode_t.
#pragma once

#include <cmath>

#include "host_device.h"
#include "layerwise/layerwise.h"

namespace lw {

template <typename T>
LW_HD T sigmoid(T x) {
  using std::exp;
  return T(1) / (T(1) + exp(-x));
}

// act(x) for a runtime mode.
template <typename T>
LW_HD T activate(lwActivationMode_t mode, T x) {
  using std::tanh;
  switch (mode) {
    case LW_ACTIVATION_SIGMOID: return sigmoid(x);
    case LW_ACTIVATION_TANH: return tanh(x);
    case LW_ACTIVATION_RELU: return x > T(0) ? x : (x != x ? x : T(0));
    case LW_ACTIVATION_THRESHOLD: return x > T(0) ? T(1) : T(0);
    default: return x;
  }
}

// act'(.) * dy, from the forward output y (and input x where it matters).
template <typename T>
LW_HD T activate_grad(lwActivationMode_t mode, T y, T x, bool have_x, T dy) {
  switch (mode) {
    case LW_ACTIVATION_SIGMOID: return dy * y * (T(1) - y);
    case LW_ACTIVATION_TANH: return dy * (T(1) - y * y);
    case LW_ACTIVATION_RELU: return (have_x ? x : y) > T(0) ? dy : T(0);
    case LW_ACTIVATION_THRESHOLD: return T(0);
    default: return dy;
  }
}

// out = alpha * v + beta * out, never reading out when beta == 0.
template <typename T>
LW_HD T blend(double alpha, double beta, T v, const T *out) {
  return beta == 0.0 ? T(alpha) * v : T(alpha) * v + T(beta) * *out;
}

}  // namespace lw
