// fused_sgd.cpp -- lw::cpu::linear_backward_sgd: dx = dy w (old w), then the
// fused dw-tile + SGD step (fused_sgd_kernel.h) for the ISA in use, in
// parallel over blocks of rows of w; the bias takes its step from the column
// sums of dy. The generic (SSE2 baseline) kernel is compiled in this file.
#include <algorithm>
#include <vector>

#include "../common/backend.h"
#include "gemm.h"
#include "isa.h"
#include "threadpool.h"

#define LW_VEC_BYTES 16
#define LW_ISA_SUFFIX generic
#include "fused_sgd_kernel.h"
#undef LW_VEC_BYTES
#undef LW_ISA_SUFFIX

namespace lw::cpu {

#define LW_DECLARE_ROWS(sfx)                                                                              \
  void fused_sgd_rows_f32_##sfx(int64_t, int64_t, int64_t, int64_t, const float *, const float *,       \
                                int64_t, float *, int64_t, float *, float, float, float, bool);          \
  void fused_sgd_rows_f64_##sfx(int64_t, int64_t, int64_t, int64_t, const double *, const double *,     \
                                int64_t, double *, int64_t, double *, double, double, double, bool);
#ifdef LAYERWISE_HAVE_AVX2
LW_DECLARE_ROWS(avx2)
#endif
#ifdef LAYERWISE_HAVE_AVX512
LW_DECLARE_ROWS(avx512)
#endif
#undef LW_DECLARE_ROWS

namespace {

template <typename T>
using RowsFn = void (*)(int64_t, int64_t, int64_t, int64_t, const T *, const T *, int64_t, T *, int64_t, T *, T,
                        T, T, bool);

template <typename T>
RowsFn<T> pick_rows();

template <>
RowsFn<float> pick_rows<float>() {
  switch (active()) {
#ifdef LAYERWISE_HAVE_AVX512
    case Isa::Avx512: return fused_sgd_rows_f32_avx512;
#endif
#ifdef LAYERWISE_HAVE_AVX2
    case Isa::Avx2: return fused_sgd_rows_f32_avx2;
#endif
    default: return fused_sgd_rows_f32_generic;
  }
}

template <>
RowsFn<double> pick_rows<double>() {
  switch (active()) {
#ifdef LAYERWISE_HAVE_AVX512
    case Isa::Avx512: return fused_sgd_rows_f64_avx512;
#endif
#ifdef LAYERWISE_HAVE_AVX2
    case Isa::Avx2: return fused_sgd_rows_f64_avx2;
#endif
    default: return fused_sgd_rows_f64_generic;
  }
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

  const T lr = (T)a.lr, mu = (T)a.momentum, wd = (T)a.weight_decay;
  const RowsFn<T> rows = pick_rows<T>();
  // Split rows of w in blocks of 4 between threads; ~1 MFLOP per thread at least.
  const int64_t blocks = (out + 3) / 4;
  const int64_t flops = 2 * n * in * out;
  const int nt = (int)std::max<int64_t>(1, std::min<int64_t>({(int64_t)ctx.num_threads, blocks, flops / 1000000 + 1}));
  struct Job {
    RowsFn<T> rows;
    const LinearSgdArgs *a;
    const T *dyT;
    T lr, mu, wd;
    int64_t blocks;
  } job{rows, &a, dyT, lr, mu, wd, blocks};
  parallel_run(nt, [](void *ctx, int t, int nthreads) {
    const Job &j = *static_cast<const Job *>(ctx);
    const LinearSgdArgs &a = *j.a;
    const int64_t b0 = j.blocks * t / nthreads, b1 = j.blocks * (t + 1) / nthreads;
    const int64_t j0 = b0 * 4, j1 = std::min(a.out, b1 * 4);
    if (j0 < j1)
      j.rows(j0, j1, a.n, a.in, j.dyT, static_cast<const T *>(a.x), a.ldx, static_cast<T *>(a.w), a.ldw,
             static_cast<T *>(a.w_velocity), j.lr, j.mu, j.wd, a.nesterov);
  }, &job);

  if (a.b) {
    T *b = static_cast<T *>(a.b);
    T *bv = static_cast<T *>(a.b_velocity);
    const SgdStep<T> s{lr, mu, wd, bv != nullptr, a.nesterov};
    for (int64_t j = 0; j < out; ++j) {
      T g = 0;
      for (int64_t i = 0; i < n; ++i) g += dyT[j * n + i];
      sgd_scalar(g, b + j, bv ? bv + j : nullptr, s);
    }
  }
}

}  // namespace

lwStatus_t linear_backward_sgd(const CpuContext &ctx, const LinearSgdArgs &a) {
  if (a.dtype == DType::F32) run<float>(ctx, a);
  else run<double>(ctx, a);
  return LW_STATUS_SUCCESS;
}

}  // namespace lw::cpu
