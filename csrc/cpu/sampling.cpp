// sampling.cpp -- Bernoulli sampling from the counter-based generator in
// rng.h (RBM Gibbs steps, denoising masks, dropout).
#include <algorithm>

#include "../common/backend.h"
#include "../common/rng.h"
#include "isa.h"
#include "kernels.h"

namespace lw::cpu {
namespace {

template <typename T>
void bernoulli_t(const CpuContext &ctx, const BernoulliArgs &a) {
  const T *p = static_cast<const T *>(a.p);
  T *y = static_cast<T *>(a.y);
  const int nt = (int)std::max<int64_t>(1, std::min<int64_t>(ctx.num_threads, a.rows * a.cols / 16384));
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t i = 0; i < a.rows; ++i) {
    const uint64_t base = a.offset + (uint64_t)i * (uint64_t)a.cols;
    for (int64_t j = 0; j < a.cols; ++j) {
      const double pj = p ? (double)p[i * a.ldp + j] : a.p_scalar;
      y[i * a.ldy + j] = uniform01(a.seed, base + (uint64_t)j) < pj ? T(1) : T(0);
    }
  }
}

}  // namespace

lwStatus_t bernoulli_sample(const CpuContext &ctx, const BernoulliArgs &a) {
#ifdef LAYERWISE_HAVE_AVX512
  if (active() == Isa::Avx512 && bernoulli_avx512(a, ctx.num_threads)) return LW_STATUS_SUCCESS;
#endif
  if (a.dtype == DType::F32) bernoulli_t<float>(ctx, a);
  else bernoulli_t<double>(ctx, a);
  return LW_STATUS_SUCCESS;
}

}  // namespace lw::cpu
