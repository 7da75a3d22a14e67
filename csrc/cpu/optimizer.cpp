// optimizer.cpp -- lw::cpu::optimizer_step: one in-place pass of any
// lwOptimizerMode_t over a tensor. The vector bodies of the ISA in use run
// through LW_ISA_DISPATCH (simd/optimizer.h, compiled per ISA); this file holds
// the scalar reference loop of the generic ISA. Both call the formulas of
// optimizer_math.h and share the parallel split of optimizer_segments.h.
#include "../common/backend.h"
#include "../common/optimizer_math.h"
#include "isa.h"
#include "kernels.h"
#include "optimizer_kernels.h"
#include "threadpool.h"

namespace lw::cpu {
namespace {
#define LW_OPTIMIZER_SEGMENTS_IN_ANON_NS
#include "optimizer_segments.h"
#undef LW_OPTIMIZER_SEGMENTS_IN_ANON_NS

template <lwOptimizerMode_t Mode, typename T>
void reference_span(const OptimizerStepArgs &a, const OptimizerCoefficients<T> &c, int64_t off, int64_t n) {
  T *p = static_cast<T *>(a.param) + off;
  const T *g = static_cast<const T *>(a.grad) + off;
  T *st[3] = {nullptr, nullptr, nullptr};
  for (int k = 0; k < a.state_count; ++k) st[k] = static_cast<T *>(a.state[k]) + off;
  for (int64_t j = 0; j < n; ++j) {
    T s[3] = {0, 0, 0};
    for (int k = 0; k < a.state_count; ++k) s[k] = st[k][j];
    T pj = p[j];
    optimizer_rule<Mode>(pj, g[j], s, c, ScalarSqrt{});
    p[j] = pj;
    for (int k = 0; k < a.state_count; ++k) st[k][j] = s[k];
  }
}

template <typename T>
void reference(const OptimizerStepArgs &a, int nthreads) {
  const OptimizerCoefficients<T> c = cast_coefficients<T>(a.coef);
  for_optimizer_segments(a, nthreads, [&](int64_t off, int64_t n) {
    switch (a.mode) {
      case LW_OPTIMIZER_SGD: reference_span<LW_OPTIMIZER_SGD>(a, c, off, n); break;
      case LW_OPTIMIZER_ADAM: reference_span<LW_OPTIMIZER_ADAM>(a, c, off, n); break;
      case LW_OPTIMIZER_ADAMW: reference_span<LW_OPTIMIZER_ADAMW>(a, c, off, n); break;
      case LW_OPTIMIZER_RMSPROP: reference_span<LW_OPTIMIZER_RMSPROP>(a, c, off, n); break;
      case LW_OPTIMIZER_ADAGRAD: reference_span<LW_OPTIMIZER_ADAGRAD>(a, c, off, n); break;
    }
  });
}

}  // namespace

lwStatus_t optimizer_step(const CpuContext &ctx, const OptimizerStepArgs &a) {
  if (LW_ISA_DISPATCH(optimizer_step, a, ctx.num_threads)) return LW_STATUS_SUCCESS;
  if (a.dtype == DType::F32) reference<float>(a, ctx.num_threads);
  else reference<double>(a, ctx.num_threads);
  return LW_STATUS_SUCCESS;
}

// lwSgdUpdate is the SGD mode of the same kernels.
lwStatus_t sgd_update(const CpuContext &ctx, const SgdArgs &s) { return optimizer_step(ctx, as_optimizer_step(s)); }

}  // namespace lw::cpu
