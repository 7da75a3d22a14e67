// fused_sgd.cu -- lwLinearBackwardSgdUpdate on the GPU (csrc/cpu/fused_sgd.cpp
// is the CPU version): dx = dy w through the GEMM with the weights before the
// step, then one pass over w in which each thread reduces its element of
// dw = dy^T x over the batch and applies the SGD step at once, so dw never
// reaches memory. Threads of a warp share j and take consecutive k: dy[i, j]
// is a broadcast and x[i, k] a coalesced read. The bias steps from the column
// sums of dy. Arithmetic (float accumulation, update formula) is the CPU's.
#include "map2d.cuh"

namespace lw::cuda {
namespace {

template <typename T>
struct SgdParams {
  T lr, mu, wd;
  bool nesterov;
};

template <typename T>
__device__ __forceinline__ void sgd_apply(T g, T *w, T *v, const SgdParams<T> &s) {
  g += s.wd * *w;
  if (v) {
    const T nv = s.mu * *v + g;
    *v = nv;
    g = s.nesterov ? g + s.mu * nv : nv;
  }
  *w -= s.lr * g;
}

// (j, k) over w (out, in).
template <typename T>
struct WeightStepOp {
  const T *dy; int64_t lddy;
  const T *x; int64_t ldx;
  int64_t n;
  T *w; int64_t ldw;
  T *v;  // null when momentum == 0
  SgdParams<T> s;
  __device__ void operator()(int64_t j, int64_t k) const {
    T g = 0;
    for (int64_t i = 0; i < n; ++i) g += dy[i * lddy + j] * x[i * ldx + k];
    sgd_apply(g, w + j * ldw + k, v ? v + j * ldw + k : nullptr, s);
  }
};

// (0, j) over b (out).
template <typename T>
struct BiasStepOp {
  const T *dy; int64_t lddy;
  int64_t n;
  T *b, *v;
  SgdParams<T> s;
  __device__ void operator()(int64_t, int64_t j) const {
    T g = 0;
    for (int64_t i = 0; i < n; ++i) g += dy[i * lddy + j];
    sgd_apply(g, b + j, v ? v + j : nullptr, s);
  }
};

template <typename T>
lwStatus_t run(const CudaContext &ctx, const LinearSgdArgs &a) {
  if (a.dx) {
    const LinearBackwardDataArgs d{a.dtype, a.n, a.in, a.out, a.dy, a.lddy, a.w, a.ldw, a.dx, a.lddx, 1.0, 0.0};
    const lwStatus_t st = linear_backward_data(ctx, d);
    if (st != LW_STATUS_SUCCESS) return st;
  }
  const SgdParams<T> s{(T)a.lr, (T)a.momentum, (T)a.weight_decay, a.nesterov};
  const T *dy = static_cast<const T *>(a.dy);
  const WeightStepOp<T> wop{dy, a.lddy, static_cast<const T *>(a.x), a.ldx, a.n, static_cast<T *>(a.w), a.ldw,
                            static_cast<T *>(a.w_velocity), s};
  lwStatus_t st = launch_map2d(ctx, a.out, a.in, false, wop, "lwLinearBackwardSgdUpdate (weights)");
  if (st != LW_STATUS_SUCCESS || !a.b) return st;
  const BiasStepOp<T> bop{dy, a.lddy, a.n, static_cast<T *>(a.b), static_cast<T *>(a.b_velocity), s};
  return launch_map2d(ctx, 1, a.out, false, bop, "lwLinearBackwardSgdUpdate (bias)");
}

}  // namespace

lwStatus_t linear_backward_sgd(const CudaContext &ctx, const LinearSgdArgs &a) {
  LW_CUDA_DEVICE_GUARD(ctx, "lwLinearBackwardSgdUpdate");
  return a.dtype == DType::F32 ? run<float>(ctx, a) : run<double>(ctx, a);
}

}  // namespace lw::cuda
