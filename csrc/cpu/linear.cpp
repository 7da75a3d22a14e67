// linear.cpp -- dense-layer primitives on the CPU: forward (x w^T + b, fused
// activation), backward data (dy w) and backward weights (dy^T x, column sums).
#include <algorithm>
#include <vector>

#include "../common/backend.h"
#include "gemm.h"
#include "isa.h"
#include "kernels.h"
#include "threadpool.h"

namespace lw::cpu {
namespace {

template <typename T>
void linear_forward_t(const CpuContext &ctx, const LinearForwardArgs &a) {
  GemmEpilogue<T> ep;
  ep.alpha = a.alpha;
  ep.beta = a.beta;
  ep.bias = static_cast<const T *>(a.b);
  ep.act = a.act;
  // (n, out) = (n, in) x (out, in)^T
  gemm<T>(false, true, a.n, a.out, a.in, static_cast<const T *>(a.x), a.ldx,
          static_cast<const T *>(a.w), a.ldw, static_cast<T *>(a.y), a.ldy, ep, ctx.num_threads);
}

template <typename T>
void linear_backward_data_t(const CpuContext &ctx, const LinearBackwardDataArgs &a) {
  GemmEpilogue<T> ep;
  ep.alpha = a.alpha;
  ep.beta = a.beta;
  // (n, in) = (n, out) x (out, in)
  gemm<T>(false, false, a.n, a.in, a.out, static_cast<const T *>(a.dy), a.lddy,
          static_cast<const T *>(a.w), a.ldw, static_cast<T *>(a.dx), a.lddx, ep,
          ctx.num_threads);
}

// db (out) = alpha * sum_rows dy + beta * db, summed in a wider type per column.
template <typename T>
void column_sums(const T *dy, int64_t lddy, int64_t n, int64_t out, T *db, double alpha,
                 double beta, int nthreads) {
  constexpr int64_t chunk = 256;
  const int64_t nchunks = (out + chunk - 1) / chunk;
  const int nt = threads_for(n * out, grain::kStream, std::min<int64_t>(nthreads, nchunks));
  parallel_chunks(nt, nchunks, 1, [&](int64_t c) {
    const int64_t j0 = c * chunk, j1 = std::min(out, j0 + chunk);
    double acc[chunk] = {0};
    for (int64_t i = 0; i < n; ++i) {
      const T *row = dy + i * lddy;
      for (int64_t j = j0; j < j1; ++j) acc[j - j0] += row[j];
    }
    for (int64_t j = j0; j < j1; ++j) {
      const double v = alpha * acc[j - j0];
      db[j] = static_cast<T>(beta == 0.0 ? v : v + beta * db[j]);
    }
  });
}

template <typename T>
void linear_backward_weights_t(const CpuContext &ctx, const LinearBackwardWeightsArgs &a) {
  GemmEpilogue<T> ep;
  ep.alpha = a.alpha;
  ep.beta = a.beta;
  // (out, in) = (n, out)^T x (n, in)
  // db is summed while dy^T is packed when the kernel path packs it.
  const bool db_done =
      gemm_rowsum<T>(true, false, a.out, a.in, a.n, static_cast<const T *>(a.dy), a.lddy,
                     static_cast<const T *>(a.x), a.ldx, static_cast<T *>(a.dw), a.lddw, ep,
                     ctx.num_threads, static_cast<T *>(a.db));
  if (!a.db || db_done) return;
  const DType dt = a.dtype;
  if (LW_ISA_DISPATCH(column_sums, dt, a.dy, a.lddy, a.n, a.out, a.db, a.alpha, a.beta, ctx.num_threads)) return;
  column_sums(static_cast<const T *>(a.dy), a.lddy, a.n, a.out, static_cast<T *>(a.db),
                a.alpha, a.beta, ctx.num_threads);
}

}  // namespace

lwStatus_t linear_forward(const CpuContext &ctx, const LinearForwardArgs &a) {
  if (a.dtype == DType::F32) linear_forward_t<float>(ctx, a);
  else linear_forward_t<double>(ctx, a);
  return LW_STATUS_SUCCESS;
}

lwStatus_t linear_backward_data(const CpuContext &ctx, const LinearBackwardDataArgs &a) {
  if (a.dtype == DType::F32) linear_backward_data_t<float>(ctx, a);
  else linear_backward_data_t<double>(ctx, a);
  return LW_STATUS_SUCCESS;
}

lwStatus_t linear_backward_weights(const CpuContext &ctx, const LinearBackwardWeightsArgs &a) {
  if (a.dtype == DType::F32) linear_backward_weights_t<float>(ctx, a);
  else linear_backward_weights_t<double>(ctx, a);
  return LW_STATUS_SUCCESS;
}

}  // namespace lw::cpu
