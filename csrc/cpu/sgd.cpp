// sgd.cpp -- in-place SGD with momentum, Nesterov and weight decay in one pass
// (torch.optim.SGD's convention, see lwSgdUpdate).
#include <algorithm>

#include "../common/backend.h"
#include "isa.h"
#include "kernels.h"

namespace lw::cpu {
namespace {

template <typename T>
void sgd_t(const CpuContext &ctx, const SgdArgs &a) {
  T *p = static_cast<T *>(a.param);
  const T *g = static_cast<const T *>(a.grad);
  T *v = static_cast<T *>(a.velocity);
  const T lr = (T)a.lr, mu = (T)a.momentum, wd = (T)a.weight_decay;
  const int nt = (int)std::max<int64_t>(1, std::min<int64_t>(ctx.num_threads, a.rows * a.cols / 32768));
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t i = 0; i < a.rows; ++i) {
    T *pr = p + i * a.ld;
    const T *gr = g + i * a.ld;
    T *vr = v ? v + i * a.ld : nullptr;
    if (!vr) {
      for (int64_t j = 0; j < a.cols; ++j) pr[j] -= lr * (gr[j] + wd * pr[j]);
    } else if (!a.nesterov) {
      for (int64_t j = 0; j < a.cols; ++j) {
        const T vj = mu * vr[j] + gr[j] + wd * pr[j];
        vr[j] = vj;
        pr[j] -= lr * vj;
      }
    } else {
      for (int64_t j = 0; j < a.cols; ++j) {
        const T d = gr[j] + wd * pr[j];
        const T vj = mu * vr[j] + d;
        vr[j] = vj;
        pr[j] -= lr * (d + mu * vj);
      }
    }
  }
}

}  // namespace

lwStatus_t sgd_update(const CpuContext &ctx, const SgdArgs &a) {
  if (LW_ISA_DISPATCH(sgd, a, ctx.num_threads)) return LW_STATUS_SUCCESS;
  if (a.dtype == DType::F32) sgd_t<float>(ctx, a);
  else sgd_t<double>(ctx, a);
  return LW_STATUS_SUCCESS;
}

}  // namespace lw::cpu
