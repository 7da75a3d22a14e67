// rbf.cpp -- radial basis function units on the CPU:
//   y (n, units) = exp(-gamma_j * ||x_i - c_j||^2)
// The squared distances come from the dense-layer GEMM as
//   ||x_i||^2 - 2 x_i . c_j + ||c_j||^2,
// clamped at 0 (the expansion can go slightly negative by cancellation when x_i
// is close to c_j), and the exponential is applied in one pass over the GEMM's
// output. The backward pass reuses the same GEMM for dx (G c) and dcenters (G^T x).
#include <algorithm>
#include <cmath>
#include <vector>

#include "../common/backend.h"
#include "gemm.h"
#include "kernels.h"
#include "threadpool.h"

namespace lw::cpu {
namespace {

// Rows with fewer elements than this per thread are not worth a thread.
constexpr int64_t kMinElemsPerThread = 16384;

int pass_threads(int nthreads, int64_t elems) {
  const int64_t by_size = std::max<int64_t>(1, elems / kMinElemsPerThread);
  return (int)std::max<int64_t>(1, std::min<int64_t>(nthreads, by_size));
}

// fn(i) for every row i in [0, rows), split in contiguous ranges over the
// library's worker pool (not OpenMP: its spinning barrier would take the
// cores from the GEMM's pool right after).
template <class F>
void for_rows(int64_t rows, int nthreads, const F &fn) {
  if (nthreads <= 1 || rows <= 1) {
    for (int64_t i = 0; i < rows; ++i) fn(i);
    return;
  }
  struct Ctx {
    const F *fn;
    int64_t rows;
  } c{&fn, rows};
  parallel_run(
      nthreads,
      [](void *p, int t, int n) {
        const Ctx &c = *static_cast<const Ctx *>(p);
        for (int64_t i = c.rows * t / n; i < c.rows * (t + 1) / n; ++i) (*c.fn)(i);
      },
      &c);
}

// sum_k r[k]^2 in double, with independent partial sums (the compiler may not
// reorder one floating-point sum, so a single accumulator would be latency-bound).
template <typename T>
double sq_norm(const T *r, int64_t cols) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t k = 0;
  for (; k + 8 <= cols; k += 8)
    for (int l = 0; l < 8; ++l) acc[l] += (double)r[k + l] * (double)r[k + l];
  for (; k < cols; ++k) acc[0] += (double)r[k] * (double)r[k];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// out[i] = ||a[i, :]||^2.
template <typename T>
void row_sq_norms(const T *a, int64_t lda, int64_t rows, int64_t cols, double *out, int nthreads) {
  for_rows(rows, pass_threads(nthreads, rows * cols), [&](int64_t i) { out[i] = sq_norm(a + i * lda, cols); });
}

// dist (n, units) = max(0, xn_i + cn_j + cross_ij), where cross = -2 x c^T is
// already in dist (row stride ld). In place.
template <typename T>
void add_norms_clamp(T *dist, int64_t ld, int64_t n, int64_t units, const double *xn,
                     const double *cn, int nthreads) {
  for_rows(n, pass_threads(nthreads, n * units), [&](int64_t i) {
    T *r = dist + i * ld;
    const double xi = xn[i];
    for (int64_t j = 0; j < units; ++j) {
      const double d = xi + cn[j] + (double)r[j];
      r[j] = (T)(d > 0.0 ? d : 0.0);
    }
  });
}

// cross (n, units, row stride ld) = -2 x c^T on the dense layer's forward product;
// xn, cn = the squared row norms of x and c.
template <typename T>
void distance_terms(const T *x, int64_t ldx, const T *c, int64_t ldc, int64_t n, int64_t in,
                    int64_t units, T *cross, int64_t ld, double *xn, double *cn, int nthreads) {
  row_sq_norms(x, ldx, n, in, xn, nthreads);
  row_sq_norms(c, ldc, units, in, cn, nthreads);
  GemmEpilogue<T> ep;
  ep.alpha = -2.0;
  ep.beta = 0.0;
  // (n, units) = (n, in) x (units, in)^T
  gemm<T>(false, true, n, units, in, x, ldx, c, ldc, cross, ld, ep, nthreads);
}

// Squared distances of every row of x to every center, into dist (ld).
template <typename T>
void squared_distances(const T *x, int64_t ldx, const T *c, int64_t ldc, int64_t n, int64_t in,
                       int64_t units, T *dist, int64_t ld, int nthreads) {
  std::vector<double> xn(n), cn(units);
  distance_terms(x, ldx, c, ldc, n, in, units, dist, ld, xn.data(), cn.data(), nthreads);
  add_norms_clamp(dist, ld, n, units, xn.data(), cn.data(), nthreads);
}

template <typename T>
void rbf_forward_t(const CpuContext &ctx, const RbfForwardArgs &a) {
  const T *x = static_cast<const T *>(a.x);
  const T *c = static_cast<const T *>(a.c);
  const T *gamma = static_cast<const T *>(a.gamma);
  T *y = static_cast<T *>(a.y);
  const int nt = ctx.num_threads;
  // With beta == 0 the cross term goes straight into y; otherwise y's old values
  // are still needed for the blend, so it goes to a scratch matrix.
  std::vector<T> scratch;
  T *cross = y;
  int64_t ld = a.ldy;
  if (a.beta != 0.0) {
    scratch.resize((size_t)(a.n * a.units));
    cross = scratch.data();
    ld = a.units;
  }
  std::vector<double> xn(a.n), cn(a.units);
  distance_terms(x, a.ldx, c, a.ldc, a.n, a.in, a.units, cross, ld, xn.data(), cn.data(), nt);
  // One pass over the product: add the norms, clamp, exponentiate, blend;
  // vectorized (simd/rbf.h) on the norms in T, else the reference loop below.
  std::vector<T> xn_t(xn.begin(), xn.end()), cn_t(cn.begin(), cn.end());
  const RbfEpilogueArgs ea{a.dtype, a.n, a.units, cross, ld, xn_t.data(), cn_t.data(), gamma,
                           y, a.ldy, a.alpha, a.beta};
  if (LW_ISA_DISPATCH(rbf_epilogue, ea, nt)) return;
  const double alpha = a.alpha, beta = a.beta;
  const int64_t units = a.units;
  for_rows(a.n, pass_threads(nt, a.n * units), [&](int64_t i) {
    const T *t = cross + i * ld;
    T *yr = y + i * a.ldy;
    const double xi = xn[i];
    for (int64_t j = 0; j < units; ++j) {
      const double d = xi + cn[j] + (double)t[j];
      const T v = std::exp(-gamma[j] * (T)(d > 0.0 ? d : 0.0));
      yr[j] = beta == 0.0 ? (T)(alpha * v) : (T)(alpha * v + beta * yr[j]);
    }
  });
}

// v (len) = alpha * v_new + beta * v
template <typename T>
void blend_vector(T *v, const double *v_new, int64_t len, double alpha, double beta) {
  for (int64_t j = 0; j < len; ++j)
    v[j] = (T)(beta == 0.0 ? alpha * v_new[j] : alpha * v_new[j] + beta * v[j]);
}

template <typename T>
void rbf_backward_t(const CpuContext &ctx, const RbfBackwardArgs &a) {
  const T *x = static_cast<const T *>(a.x);
  const T *c = static_cast<const T *>(a.c);
  const T *gamma = static_cast<const T *>(a.gamma);
  const T *y = static_cast<const T *>(a.y);
  const T *dy = static_cast<const T *>(a.dy);
  const int nt = ctx.num_threads;
  const int64_t n = a.n, in = a.in, units = a.units;
  // One scratch matrix: first the squared distances (only dgamma needs them),
  // then G = dL/dD = -gamma_j * y_ij * dy_ij.
  std::vector<T> g((size_t)(n * units));
  const int64_t ldg = units;
  if (a.dgamma) {
    squared_distances(x, a.ldx, c, a.ldc, n, in, units, g.data(), ldg, nt);
    // dL/dgamma_j = -sum_i dy_ij y_ij D_ij, reduced over rows in double per column
    std::vector<double> dgam(units, 0.0);
    for (int64_t i = 0; i < n; ++i) {
      const T *d = g.data() + i * ldg, *yr = y + i * a.ldy, *dyr = dy + i * a.lddy;
      for (int64_t j = 0; j < units; ++j) dgam[j] -= (double)dyr[j] * (double)yr[j] * (double)d[j];
    }
    blend_vector(static_cast<T *>(a.dgamma), dgam.data(), units, a.alpha, a.beta);
  }
  if (!a.dx && !a.dc) return;
  for_rows(n, pass_threads(nt, n * units), [&](int64_t i) {
    T *gr = g.data() + i * ldg;
    const T *yr = y + i * a.ldy, *dyr = dy + i * a.lddy;
    for (int64_t j = 0; j < units; ++j) gr[j] = -gamma[j] * yr[j] * dyr[j];
  });
  // dD_ij/dx_i = 2 (x_i - c_j), dD_ij/dc_j = -2 (x_i - c_j), so
  //   dx = 2 (rowsum(G) * x - G c),   dc = 2 (colsum(G) * c - G^T x).
  GemmEpilogue<T> ep;
  ep.alpha = -2.0 * a.alpha;
  ep.beta = a.beta;
  if (a.dx) {
    T *dx = static_cast<T *>(a.dx);
    // (n, in) = (n, units) x (units, in): the dense layer's backward-data product
    gemm<T>(false, false, n, in, units, g.data(), ldg, c, a.ldc, dx, a.lddx, ep, nt);
    const double two_alpha = 2.0 * a.alpha;
    for_rows(n, pass_threads(nt, n * (units + in)), [&](int64_t i) {
      const T *gr = g.data() + i * ldg;
      double rs = 0.0;
      for (int64_t j = 0; j < units; ++j) rs += (double)gr[j];
      const T s = (T)(two_alpha * rs);
      const T *xr = x + i * a.ldx;
      T *dxr = dx + i * a.lddx;
      for (int64_t k = 0; k < in; ++k) dxr[k] += s * xr[k];
    });
  }
  if (a.dc) {
    T *dc = static_cast<T *>(a.dc);
    // (units, in) = (n, units)^T x (n, in): the dense layer's weight-gradient product
    gemm<T>(true, false, units, in, n, g.data(), ldg, x, a.ldx, dc, a.lddc, ep, nt);
    std::vector<double> colsum(units, 0.0);
    for (int64_t i = 0; i < n; ++i) {
      const T *gr = g.data() + i * ldg;
      for (int64_t j = 0; j < units; ++j) colsum[j] += (double)gr[j];
    }
    const double two_alpha = 2.0 * a.alpha;
    for_rows(units, pass_threads(nt, units * in), [&](int64_t j) {
      const T s = (T)(two_alpha * colsum[j]);
      const T *cr = c + j * a.ldc;
      T *dcr = dc + j * a.lddc;
      for (int64_t k = 0; k < in; ++k) dcr[k] += s * cr[k];
    });
  }
}

}  // namespace

lwStatus_t rbf_forward(const CpuContext &ctx, const RbfForwardArgs &a) {
  if (a.dtype == DType::F32) rbf_forward_t<float>(ctx, a);
  else rbf_forward_t<double>(ctx, a);
  return LW_STATUS_SUCCESS;
}

lwStatus_t rbf_backward(const CpuContext &ctx, const RbfBackwardArgs &a) {
  if (a.dtype == DType::F32) rbf_backward_t<float>(ctx, a);
  else rbf_backward_t<double>(ctx, a);
  return LW_STATUS_SUCCESS;
}

}  // namespace lw::cpu
