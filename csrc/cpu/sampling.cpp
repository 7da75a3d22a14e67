// sampling.cpp -- Bernoulli sampling from the counter-based generator in
// rng.h (RBM Gibbs steps, denoising masks, dropout).
#include <algorithm>

#include "../common/backend.h"
#include "../common/rng.h"
#include "isa.h"
#include "kernels.h"
#include "threadpool.h"

namespace lw::cpu {
namespace {

template <typename T>
void bernoulli_t(const CpuContext &ctx, const BernoulliArgs &a) {
  const T *p = static_cast<const T *>(a.p);
  T *y = static_cast<T *>(a.y);
  const int nt = threads_for(a.rows * a.cols, grain::kSample, ctx.num_threads);
  parallel_for(nt, a.rows, [&](int64_t i) {
    const uint64_t base = a.offset + (uint64_t)i * (uint64_t)a.cols;
    for (int64_t j = 0; j < a.cols; ++j) {
      const double pj = p ? (double)p[i * a.ldp + j] : a.p_scalar;
      y[i * a.ldy + j] = uniform01(a.seed, base + (uint64_t)j) < pj ? T(1) : T(0);
    }
  });
}

}  // namespace

lwStatus_t bernoulli_sample(const CpuContext &ctx, const BernoulliArgs &a) {
  if (LW_ISA_DISPATCH(bernoulli, a, ctx.num_threads)) return LW_STATUS_SUCCESS;
  if (a.dtype == DType::F32) bernoulli_t<float>(ctx, a);
  else bernoulli_t<double>(ctx, a);
  return LW_STATUS_SUCCESS;
}

}  // namespace lw::cpu
