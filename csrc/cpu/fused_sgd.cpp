// fused_sgd.cpp -- lw::cpu::linear_backward_sgd: dx = dy w (old w), then the
// fused dw-tile + SGD step (fused_sgd_kernel.h) for the ISA in use, in
// parallel over blocks of rows of w; the bias takes its step from the column
// sums of dy. The generic (SSE2 baseline) kernel is compiled in this file.
// Also lw::cpu::linear_backward_update, the same layer update for any optimizer
// mode through a gradient workspace (lwLinearBackwardUpdate sends SGD to the
// fused kernel instead).
#include <algorithm>
#include <vector>

#include "../common/backend.h"
#include "gemm.h"
#include "isa.h"
#include "kernels.h"
#include "threadpool.h"

#define LW_VEC_BYTES 16
#define LW_ISA_SUFFIX generic
#include "fused_sgd_kernel.h"
#undef LW_VEC_BYTES
#undef LW_ISA_SUFFIX

namespace lw::cpu {

// The per-ISA kernels (fused_sgd_avx2.cpp, fused_sgd_avx512.cpp), for LW_ISA_DISPATCH.
#define LW_DECLARE_ROWS(sfx)                                                                            \
  bool fused_sgd_rows_f32_##sfx(int64_t, int64_t, int64_t, int64_t, const float *, const float *,     \
                                int64_t, float *, int64_t, float *, const OptimizerCoefficients<float> &); \
  bool fused_sgd_rows_f64_##sfx(int64_t, int64_t, int64_t, int64_t, const double *, const double *,   \
                                int64_t, double *, int64_t, double *, const OptimizerCoefficients<double> &);
#ifdef LAYERWISE_HAVE_AVX2
LW_DECLARE_ROWS(avx2)
#endif
#ifdef LAYERWISE_HAVE_AVX512
LW_DECLARE_ROWS(avx512)
#endif
#undef LW_DECLARE_ROWS

namespace {

// Rows [j0, j1) of w take the fused step with the kernel of the ISA in use.
void fused_rows_any(int64_t j0, int64_t j1, int64_t n, int64_t in, const float *dyT, const float *x,
                    int64_t ldx, float *w, int64_t ldw, float *vel, const OptimizerCoefficients<float> &c) {
  if (!LW_ISA_DISPATCH(fused_sgd_rows_f32, j0, j1, n, in, dyT, x, ldx, w, ldw, vel, c))
    fused_sgd_rows_f32_generic(j0, j1, n, in, dyT, x, ldx, w, ldw, vel, c);
}
void fused_rows_any(int64_t j0, int64_t j1, int64_t n, int64_t in, const double *dyT, const double *x,
                    int64_t ldx, double *w, int64_t ldw, double *vel, const OptimizerCoefficients<double> &c) {
  if (!LW_ISA_DISPATCH(fused_sgd_rows_f64, j0, j1, n, in, dyT, x, ldx, w, ldw, vel, c))
    fused_sgd_rows_f64_generic(j0, j1, n, in, dyT, x, ldx, w, ldw, vel, c);
}

template <typename T>
void run(const CpuContext &ctx, const LinearSgdArgs &a) {
  const T *dy = static_cast<const T *>(a.dy);
  T *w = static_cast<T *>(a.w);
  const int64_t n = a.n, in = a.in, out = a.out;

  // dx must see the weights before the step.
  if (a.dx) {
    GemmEpilogue<T> ep;
    gemm<T>(false, false, n, in, out, dy, a.lddy, w, a.ldw, static_cast<T *>(a.dx), a.lddx, ep, ctx.num_threads);
  }

  // dy transposed to (out, n): the kernel broadcasts dy[i, j] for 4 rows j at a
  // time and reads them contiguously. Reused across calls on this thread.
  thread_local std::vector<T> dyT_buf;
  dyT_buf.resize(static_cast<size_t>(out * n));
  T *dyT = dyT_buf.data();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < out; ++j) dyT[j * n + i] = dy[i * a.lddy + j];

  const OptimizerCoefficients<T> c = cast_coefficients<T>(
      sgd_coefficients(a.lr, a.momentum, a.weight_decay, a.nesterov, a.w_velocity != nullptr));
  // Split rows of w in blocks of 4 between threads; ~1 MFLOP per thread at least.
  const int64_t blocks = (out + 3) / 4;
  const int64_t flops = 2 * n * in * out;
  const int nt = (int)std::max<int64_t>(1, std::min<int64_t>({(int64_t)ctx.num_threads, blocks, flops / 1000000 + 1}));
  struct Job {
    const LinearSgdArgs *a;
    const T *dyT;
    OptimizerCoefficients<T> c;
    int64_t blocks;
  } job{&a, dyT, c, blocks};
  parallel_run(nt, [](void *ctx, int t, int nthreads) {
    const Job &j = *static_cast<const Job *>(ctx);
    const LinearSgdArgs &a = *j.a;
    const int64_t b0 = j.blocks * t / nthreads, b1 = j.blocks * (t + 1) / nthreads;
    const int64_t j0 = b0 * 4, j1 = std::min(a.out, b1 * 4);
    if (j0 < j1)
      fused_rows_any(j0, j1, a.n, a.in, j.dyT, static_cast<const T *>(a.x), a.ldx, static_cast<T *>(a.w), a.ldw,
                     static_cast<T *>(a.w_velocity), j.c);
  }, &job);

  if (a.b) {
    T *b = static_cast<T *>(a.b);
    T *bv = static_cast<T *>(a.b_velocity);
    OptimizerCoefficients<T> cb = c;
    cb.use_momentum = bv != nullptr;
    for (int64_t j = 0; j < out; ++j) {
      T g = 0;
      for (int64_t i = 0; i < n; ++i) g += dyT[j * n + i];
      sgd_scalar(g, b + j, bv ? bv + j : nullptr, cb);
    }
  }
}

// The descriptor-driven layer update for modes without a register-fused kernel:
// dw and db go to a per-thread workspace (dw laid out like w), then each tensor
// takes one optimizer pass.
template <typename T>
lwStatus_t update_via_workspace(const CpuContext &ctx, const LinearUpdateArgs &a) {
  if (a.dx) {
    const LinearBackwardDataArgs d{a.dtype, a.n, a.in, a.out, a.dy, a.lddy, a.w, a.ldw, a.dx, a.lddx, 1.0, 0.0};
    const lwStatus_t st = linear_backward_data(ctx, d);
    if (st != LW_STATUS_SUCCESS) return st;
  }
  thread_local std::vector<T> workspace;
  workspace.resize(static_cast<size_t>(a.out * a.ldw + a.out));
  T *dw = workspace.data();
  T *db = a.b ? dw + a.out * a.ldw : nullptr;
  const LinearBackwardWeightsArgs g{a.dtype, a.n, a.in, a.out, a.dy, a.lddy, a.x, a.ldx, dw, a.ldw, db, 1.0, 0.0};
  lwStatus_t st = linear_backward_weights(ctx, g);
  if (st != LW_STATUS_SUCCESS) return st;
  OptimizerStepArgs w{};
  w.dtype = a.dtype;
  w.rows = a.out;
  w.cols = a.in;
  w.ld = a.ldw;
  w.param = a.w;
  w.grad = dw;
  w.state_count = a.state_count;
  for (int k = 0; k < a.state_count; ++k) w.state[k] = a.w_state[k];
  w.mode = a.mode;
  w.coef = a.coef;
  st = optimizer_step(ctx, w);
  if (st != LW_STATUS_SUCCESS || !a.b) return st;
  OptimizerStepArgs b = w;
  b.rows = 1;
  b.cols = a.out;
  b.ld = a.out;
  b.param = a.b;
  b.grad = db;
  for (int k = 0; k < a.state_count; ++k) b.state[k] = a.b_state[k];
  return optimizer_step(ctx, b);
}

}  // namespace

lwStatus_t linear_backward_update(const CpuContext &ctx, const LinearUpdateArgs &a) {
  return a.dtype == DType::F32 ? update_via_workspace<float>(ctx, a) : update_via_workspace<double>(ctx, a);
}

lwStatus_t linear_backward_sgd(const CpuContext &ctx, const LinearSgdArgs &a) {
  if (a.dtype == DType::F32) run<float>(ctx, a);
  else run<double>(ctx, a);
  return LW_STATUS_SUCCESS;
}

}  // namespace lw::cpu
