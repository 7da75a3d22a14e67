// loss_math.h -- the per-element binary cross-entropy of lwLossMode_t, shared by
// the CPU reference (cpu/loss.cpp) and the CUDA kernel (cuda/loss.cu). Computed
// in double for either storage type.
#pragma once

#include <cmath>

#include "host_device.h"
#include "layerwise/layerwise.h"

namespace lw {

// The clamp's eps for a storage type of `elem_bytes` bytes (layerwise.h).
LW_HD double bce_eps(int elem_bytes) { return elem_bytes == 4 ? LW_BCE_EPS_FLOAT32 : LW_BCE_EPS_FLOAT64; }

// p clamped to [eps, 1 - eps]. NaN-propagating: comparisons with NaN are false,
// so NaN passes through.
LW_HD double bce_clamp(double p, double eps) { return p < eps ? eps : (p > 1.0 - eps ? 1.0 - eps : p); }

// -(t log q + (1 - t) log(1 - q)) for a clamped q.
LW_HD double bce_term(double q, double t) {
  using std::log;
  using std::log1p;
  return -(t * log(q) + (1.0 - t) * log1p(-q));
}

// d bce_term / d q = (q - t) / (q (1 - q)).
LW_HD double bce_grad(double q, double t) { return (q - t) / (q * (1.0 - q)); }

}  // namespace lw
