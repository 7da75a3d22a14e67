// loss.cpp -- the three losses, value and gradient in one pass (see
// lwLossMode_t for the exact definitions and the BCE clamp).
#include <algorithm>
#include <cmath>

#include "../common/backend.h"
#include "../common/loss_math.h"
#include "isa.h"
#include "kernels.h"
#include "threadpool.h"

namespace lw::cpu {
namespace {

int loss_threads(int nthreads, int64_t elems) { return threads_for(elems, grain::kStream, nthreads); }

template <typename T>
double quadratic(const CpuContext &ctx, const LossArgs &a) {
  const T *p = static_cast<const T *>(a.pred), *t = static_cast<const T *>(a.target);
  T *g = static_cast<T *>(a.grad);
  const double inv_n = 1.0 / (double)a.rows;
  const double total = sum_rows(a.rows, loss_threads(ctx.num_threads, a.rows * a.cols), [&](int64_t i) {
    double total = 0;
    const T *pr = p + i * a.ldp, *tr = t + i * a.ldt;
    double s = 0;
    for (int64_t j = 0; j < a.cols; ++j) {
      const T d = pr[j] - tr[j];
      s += (double)d * (double)d;
      if (g) g[i * a.ldg + j] = static_cast<T>(d * inv_n);
    }
    total += s;
    return total;
  });
  return 0.5 * total * inv_n;
}

template <typename T>
double binary_cross_entropy(const CpuContext &ctx, const LossArgs &a) {
  const T *p = static_cast<const T *>(a.pred), *t = static_cast<const T *>(a.target);
  T *g = static_cast<T *>(a.grad);
  const double eps = bce_eps((int)sizeof(T));
  const double inv_n = 1.0 / (double)a.rows;
  const double total = sum_rows(a.rows, loss_threads(ctx.num_threads, a.rows * a.cols), [&](int64_t i) {
    double total = 0;
    const T *pr = p + i * a.ldp, *tr = t + i * a.ldt;
    double s = 0;
    for (int64_t j = 0; j < a.cols; ++j) {
      const double q = bce_clamp((double)pr[j], eps), tv = (double)tr[j];
      s += bce_term(q, tv);
      if (g) g[i * a.ldg + j] = static_cast<T>(bce_grad(q, tv) * inv_n);
    }
    total += s;
    return total;
  });
  return total * inv_n;
}

template <typename T>
double softmax_cross_entropy(const CpuContext &ctx, const LossArgs &a) {
  const T *p = static_cast<const T *>(a.pred);
  const int32_t *lab = static_cast<const int32_t *>(a.target);
  T *g = static_cast<T *>(a.grad);
  const double inv_n = 1.0 / (double)a.rows;
  const double total = sum_rows(a.rows, loss_threads(ctx.num_threads, a.rows * a.cols), [&](int64_t i) {
    double total = 0;
    const T *pr = p + i * a.ldp;
    const int32_t y = lab[i * a.ldt];
    T m = pr[0];
    for (int64_t j = 1; j < a.cols; ++j) m = std::max(m, pr[j]);
    double s = 0;
    for (int64_t j = 0; j < a.cols; ++j) s += std::exp((double)(pr[j] - m));
    const double log_s = std::log(s);
    total += log_s - (double)(pr[y] - m);  // -log softmax[y]
    if (g) {
      T *gr = g + i * a.ldg;
      const double inv_s = 1.0 / s;
      for (int64_t j = 0; j < a.cols; ++j) {
        const double q = std::exp((double)(pr[j] - m)) * inv_s;
        gr[j] = static_cast<T>((q - (j == y ? 1.0 : 0.0)) * inv_n);
      }
    }
    return total;
  });
  return total * inv_n;
}

}  // namespace

// float32 quadratic and softmax cross-entropy run vectorized (kernels_*.cpp);
// BCE (log/log1p in double) and float64 stay here.
static bool loss_isa(const CpuContext &ctx, const LossArgs &a, double *v) {
  return LW_ISA_DISPATCH(loss, a, ctx.num_threads, v);
}

lwStatus_t loss_forward_backward(const CpuContext &ctx, const LossArgs &a) {
  double v = 0;
  if (loss_isa(ctx, a, &v)) {
    if (a.loss_value) *a.loss_value = v;
    return LW_STATUS_SUCCESS;
  }
  if (a.rows > 0) {
    const bool f32 = a.dtype == DType::F32;
    switch (a.loss) {
      case LW_LOSS_QUADRATIC: v = f32 ? quadratic<float>(ctx, a) : quadratic<double>(ctx, a); break;
      case LW_LOSS_BINARY_CROSS_ENTROPY:
        v = f32 ? binary_cross_entropy<float>(ctx, a) : binary_cross_entropy<double>(ctx, a);
        break;
      case LW_LOSS_SOFTMAX_CROSS_ENTROPY:
        v = f32 ? softmax_cross_entropy<float>(ctx, a) : softmax_cross_entropy<double>(ctx, a);
        break;
    }
  }
  if (a.loss_value) *a.loss_value = v;
  return LW_STATUS_SUCCESS;
}

}  // namespace lw::cpu
