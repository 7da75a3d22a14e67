// activation.cpp -- elementwise activations forward and backward, and the
// row-wise softmax, on the CPU.
#include <algorithm>
#include <cmath>

#include "../common/activation_math.h"
#include "../common/backend.h"
#include "isa.h"
#include "kernels.h"
#include "threadpool.h"

namespace lw::cpu {
namespace {

int elementwise_threads(int nthreads, int64_t elems) { return threads_for(elems, grain::kStream, nthreads); }

template <typename T>
void activation_forward_t(const CpuContext &ctx, const ActivationForwardArgs &a) {
  const T *x = static_cast<const T *>(a.x);
  T *y = static_cast<T *>(a.y);
  parallel_for(elementwise_threads(ctx.num_threads, a.rows * a.cols), a.rows, [&](int64_t i) {
    const T *xr = x + i * a.ldx;
    T *yr = y + i * a.ldy;
    for (int64_t j = 0; j < a.cols; ++j) yr[j] = blend(a.alpha, a.beta, activate(a.mode, xr[j]), yr + j);
  });
}

template <typename T>
void activation_backward_t(const CpuContext &ctx, const ActivationBackwardArgs &a) {
  const T *y = static_cast<const T *>(a.y);
  const T *dy = static_cast<const T *>(a.dy);
  const T *x = static_cast<const T *>(a.x);
  T *dx = static_cast<T *>(a.dx);
  const bool have_x = x != nullptr;
  parallel_for(elementwise_threads(ctx.num_threads, a.rows * a.cols), a.rows, [&](int64_t i) {
    const T *yr = y + i * a.ldy, *dyr = dy + i * a.lddy;
    const T *xr = have_x ? x + i * a.ldx : nullptr;
    T *dxr = dx + i * a.lddx;
    for (int64_t j = 0; j < a.cols; ++j) {
      const T g = activate_grad(a.mode, yr[j], have_x ? xr[j] : T(0), have_x, dyr[j]);
      dxr[j] = blend(a.alpha, a.beta, g, dxr + j);
    }
  });
}

template <typename T>
void softmax_t(const CpuContext &ctx, const SoftmaxArgs &a) {
  const T *x = static_cast<const T *>(a.x);
  T *y = static_cast<T *>(a.y);
  parallel_for(elementwise_threads(ctx.num_threads, a.rows * a.cols), a.rows, [&](int64_t i) {
    const T *xr = x + i * a.ldx;
    T *yr = y + i * a.ldy;
    T m = xr[0];
    for (int64_t j = 1; j < a.cols; ++j) m = std::max(m, xr[j]);
    T s = 0;
    for (int64_t j = 0; j < a.cols; ++j) s += std::exp(xr[j] - m);
    const T inv = T(1) / s;
    for (int64_t j = 0; j < a.cols; ++j) yr[j] = blend(a.alpha, a.beta, std::exp(xr[j] - m) * inv, yr + j);
  });
}

}  // namespace

lwStatus_t activation_forward(const CpuContext &ctx, const ActivationForwardArgs &a) {
  if (LW_ISA_DISPATCH(activation_forward, a, ctx.num_threads)) return LW_STATUS_SUCCESS;
  if (a.dtype == DType::F32) activation_forward_t<float>(ctx, a);
  else activation_forward_t<double>(ctx, a);
  return LW_STATUS_SUCCESS;
}

lwStatus_t activation_backward(const CpuContext &ctx, const ActivationBackwardArgs &a) {
  if (LW_ISA_DISPATCH(activation_backward, a, ctx.num_threads)) return LW_STATUS_SUCCESS;
  if (a.dtype == DType::F32) activation_backward_t<float>(ctx, a);
  else activation_backward_t<double>(ctx, a);
  return LW_STATUS_SUCCESS;
}

lwStatus_t softmax_forward(const CpuContext &ctx, const SoftmaxArgs &a) {
  if (LW_ISA_DISPATCH(softmax, a, ctx.num_threads)) return LW_STATUS_SUCCESS;
  if (a.dtype == DType::F32) softmax_t<float>(ctx, a);
  else softmax_t<double>(ctx, a);
  return LW_STATUS_SUCCESS;
}

}  // namespace lw::cpu
