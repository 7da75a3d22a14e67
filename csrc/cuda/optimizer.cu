// optimizer.cu -- lwOptimizerStep and lwLinearBackwardUpdate on the GPU: one
// elementwise kernel per tensor, each thread applying optimizer_math.h's
// formula of the mode (the CPU backend's arithmetic) to its elements. The
// fused layer update needs no workspace here: each thread of the weight pass
// reduces its element of dw = dy^T x over the batch and steps it at once, so dw
// never reaches memory (threads of a warp share j and take consecutive k: dy[i, j]
// is a broadcast, x[i, k] a coalesced read); the bias pass reduces a column of dy.
// SGD's older entry points (lwSgdUpdate, lwLinearBackwardSgdUpdate) run here too.
#include "../common/optimizer_math.h"
#include "map2d.cuh"

namespace lw::cuda {
namespace {

// The state buffers of one tensor, in layerwise.h's order.
template <typename T>
struct StatePointers {
  T *s[3];
  int count;
};

// One element's step: loads the state, applies the formula, stores back.
template <lwOptimizerMode_t Mode, typename T>
__device__ __forceinline__ void step_element(T *p, T g, const StatePointers<T> &st, int64_t i,
                                             const OptimizerCoefficients<T> &c) {
  T s[3] = {0, 0, 0};
  for (int k = 0; k < st.count; ++k) s[k] = st.s[k][i];
  T pv = *p;
  optimizer_rule<Mode>(pv, g, s, c, ScalarSqrt{});
  *p = pv;
  for (int k = 0; k < st.count; ++k) st.s[k][i] = s[k];
}

template <lwOptimizerMode_t Mode, typename T>
struct StepOp {
  T *param;
  const T *grad;
  StatePointers<T> st;
  int64_t ld;
  OptimizerCoefficients<T> c;
  __device__ void operator()(int64_t r, int64_t col) const {
    const int64_t i = r * ld + col;
    step_element<Mode>(param + i, grad[i], st, i, c);
  }
};

// (j, k) over w (out, in): dw[j, k] = sum_i dy[i, j] x[i, k], then the step.
template <lwOptimizerMode_t Mode, typename T>
struct WeightUpdateOp {
  const T *dy; int64_t lddy;
  const T *x; int64_t ldx;
  int64_t n;
  T *w; int64_t ldw;
  StatePointers<T> st;
  OptimizerCoefficients<T> c;
  __device__ void operator()(int64_t j, int64_t k) const {
    T g = 0;
    for (int64_t i = 0; i < n; ++i) g += dy[i * lddy + j] * x[i * ldx + k];
    const int64_t e = j * ldw + k;
    step_element<Mode>(w + e, g, st, e, c);
  }
};

// (0, j) over b (out): db[j] = sum_i dy[i, j], then the step.
template <lwOptimizerMode_t Mode, typename T>
struct BiasUpdateOp {
  const T *dy; int64_t lddy;
  int64_t n;
  T *b;
  StatePointers<T> st;
  OptimizerCoefficients<T> c;
  __device__ void operator()(int64_t, int64_t j) const {
    T g = 0;
    for (int64_t i = 0; i < n; ++i) g += dy[i * lddy + j];
    step_element<Mode>(b + j, g, st, j, c);
  }
};

template <typename T>
StatePointers<T> state_pointers(void *const *s, int count) {
  StatePointers<T> p{{nullptr, nullptr, nullptr}, count};
  for (int k = 0; k < count; ++k) p.s[k] = static_cast<T *>(s[k]);
  return p;
}

template <lwOptimizerMode_t Mode, typename T>
lwStatus_t step_t(const CudaContext &ctx, const OptimizerStepArgs &a) {
  const StepOp<Mode, T> op{static_cast<T *>(a.param), static_cast<const T *>(a.grad),
                           state_pointers<T>(a.state, a.state_count), a.ld,
                           cast_coefficients<T>(a.coef)};
  return launch_map2d(ctx, a.rows, a.cols, a.rows == 1 || a.ld == a.cols, op, "lwOptimizerStep");
}

template <lwOptimizerMode_t Mode, typename T>
lwStatus_t update_t(const CudaContext &ctx, const LinearUpdateArgs &a) {
  if (a.dx) {
    const LinearBackwardDataArgs d{a.dtype, a.n, a.in, a.out, a.dy, a.lddy, a.w, a.ldw, a.dx, a.lddx, 1.0, 0.0};
    const lwStatus_t st = linear_backward_data(ctx, d);
    if (st != LW_STATUS_SUCCESS) return st;
  }
  const OptimizerCoefficients<T> c = cast_coefficients<T>(a.coef);
  const T *dy = static_cast<const T *>(a.dy);
  const WeightUpdateOp<Mode, T> wop{dy, a.lddy, static_cast<const T *>(a.x), a.ldx, a.n,
                                    static_cast<T *>(a.w), a.ldw,
                                    state_pointers<T>(a.w_state, a.state_count), c};
  lwStatus_t st = launch_map2d(ctx, a.out, a.in, false, wop, "lwLinearBackwardUpdate (weights)");
  if (st != LW_STATUS_SUCCESS || !a.b) return st;
  const BiasUpdateOp<Mode, T> bop{dy, a.lddy, a.n, static_cast<T *>(a.b),
                                  state_pointers<T>(a.b_state, a.state_count), c};
  return launch_map2d(ctx, 1, a.out, false, bop, "lwLinearBackwardUpdate (bias)");
}

// Calls fn<Mode, T>(ctx, args) for the mode and dtype of args.
#define LW_OPTIMIZER_DISPATCH(fn, ctx, a)                                                  \
  do {                                                                                     \
    const bool f32 = (a).dtype == DType::F32;                                              \
    switch ((a).mode) {                                                                    \
      case LW_OPTIMIZER_SGD:                                                               \
        return f32 ? fn<LW_OPTIMIZER_SGD, float>(ctx, a) : fn<LW_OPTIMIZER_SGD, double>(ctx, a); \
      case LW_OPTIMIZER_ADAM:                                                              \
        return f32 ? fn<LW_OPTIMIZER_ADAM, float>(ctx, a) : fn<LW_OPTIMIZER_ADAM, double>(ctx, a); \
      case LW_OPTIMIZER_ADAMW:                                                             \
        return f32 ? fn<LW_OPTIMIZER_ADAMW, float>(ctx, a) : fn<LW_OPTIMIZER_ADAMW, double>(ctx, a); \
      case LW_OPTIMIZER_RMSPROP:                                                           \
        return f32 ? fn<LW_OPTIMIZER_RMSPROP, float>(ctx, a)                               \
                   : fn<LW_OPTIMIZER_RMSPROP, double>(ctx, a);                             \
      case LW_OPTIMIZER_ADAGRAD:                                                           \
        return f32 ? fn<LW_OPTIMIZER_ADAGRAD, float>(ctx, a)                               \
                   : fn<LW_OPTIMIZER_ADAGRAD, double>(ctx, a);                             \
    }                                                                                      \
    return fail(LW_STATUS_INTERNAL_ERROR, "optimizer: unknown mode reached the CUDA backend"); \
  } while (0)

}  // namespace

lwStatus_t optimizer_step(const CudaContext &ctx, const OptimizerStepArgs &a) {
  LW_CUDA_DEVICE_GUARD(ctx, "lwOptimizerStep");
  LW_OPTIMIZER_DISPATCH(step_t, ctx, a);
}

lwStatus_t linear_backward_update(const CudaContext &ctx, const LinearUpdateArgs &a) {
  LW_CUDA_DEVICE_GUARD(ctx, "lwLinearBackwardUpdate");
  LW_OPTIMIZER_DISPATCH(update_t, ctx, a);
}

// lwSgdUpdate and lwLinearBackwardSgdUpdate are the SGD mode of the same kernels.
lwStatus_t sgd_update(const CudaContext &ctx, const SgdArgs &s) {
  LW_CUDA_DEVICE_GUARD(ctx, "lwSgdUpdate");
  const OptimizerStepArgs a = as_optimizer_step(s);
  return a.dtype == DType::F32 ? step_t<LW_OPTIMIZER_SGD, float>(ctx, a)
                               : step_t<LW_OPTIMIZER_SGD, double>(ctx, a);
}

lwStatus_t linear_backward_sgd(const CudaContext &ctx, const LinearSgdArgs &s) {
  LW_CUDA_DEVICE_GUARD(ctx, "lwLinearBackwardSgdUpdate");
  const LinearUpdateArgs a = as_linear_update(s);
  return a.dtype == DType::F32 ? update_t<LW_OPTIMIZER_SGD, float>(ctx, a)
                               : update_t<LW_OPTIMIZER_SGD, double>(ctx, a);
}

}  // namespace lw::cuda
