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

namespace lw::cpu {
namespace {

// Rows with fewer elements than this per thread are not worth a thread.
constexpr int64_t kMinElemsPerThread = 16384;

int pass_threads(int nthreads, int64_t elems) {
  const int64_t by_size = std::max<int64_t>(1, elems / kMinElemsPerThread);
  return (int)std::max<int64_t>(1, std::min<int64_t>(nthreads, by_size));
}

// out[i] = sum_k a[i, k]^2, accumulated in double.
template <typename T>
void row_sq_norms(const T *a, int64_t lda, int64_t rows, int64_t cols, double *out, int nthreads) {
#pragma omp parallel for num_threads(pass_threads(nthreads, rows * cols)) schedule(static)
  for (int64_t i = 0; i < rows; ++i) {
    const T *r = a + i * lda;
    double s = 0.0;
    for (int64_t k = 0; k < cols; ++k) s += (double)r[k] * (double)r[k];
    out[i] = s;
  }
}

// dist (n, units) = max(0, xn_i + cn_j + cross_ij), where cross = -2 x c^T is
// already in dist (row stride ld). Returns nothing; in place.
template <typename T>
void add_norms_clamp(T *dist, int64_t ld, int64_t n, int64_t units, const double *xn,
                     const double *cn, int nthreads) {
#pragma omp parallel for num_threads(pass_threads(nthreads, n * units)) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    T *r = dist + i * ld;
    const double xi = xn[i];
    for (int64_t j = 0; j < units; ++j) {
      const double d = xi + cn[j] + (double)r[j];
      r[j] = (T)(d > 0.0 ? d : 0.0);
    }
  }
}

// Squared distances of every row of x to every center, into dist (ld).
template <typename T>
void squared_distances(const T *x, int64_t ldx, const T *c, int64_t ldc, int64_t n, int64_t in,
                       int64_t units, T *dist, int64_t ld, int nthreads) {
  std::vector<double> xn(n), cn(units);
  row_sq_norms(x, ldx, n, in, xn.data(), nthreads);
  row_sq_norms(c, ldc, units, in, cn.data(), nthreads);
  GemmEpilogue<T> ep;
  ep.alpha = -2.0;
  ep.beta = 0.0;
  // (n, units) = (n, in) x (units, in)^T, the dense layer's forward product
  gemm<T>(false, true, n, units, in, x, ldx, c, ldc, dist, ld, ep, nthreads);
  add_norms_clamp(dist, ld, n, units, xn.data(), cn.data(), nthreads);
}

template <typename T>
void rbf_forward_t(const CpuContext &ctx, const RbfForwardArgs &a) {
  const T *x = static_cast<const T *>(a.x);
  const T *c = static_cast<const T *>(a.c);
  const T *gamma = static_cast<const T *>(a.gamma);
  T *y = static_cast<T *>(a.y);
  const int nt = ctx.num_threads;
  // With beta == 0 the distances go straight into y; otherwise y's old values
  // are still needed for the blend, so they go to a scratch matrix.
  std::vector<T> scratch;
  T *dist = y;
  int64_t ld = a.ldy;
  if (a.beta != 0.0) {
    scratch.resize((size_t)(a.n * a.units));
    dist = scratch.data();
    ld = a.units;
  }
  squared_distances(x, a.ldx, c, a.ldc, a.n, a.in, a.units, dist, ld, nt);
  const double alpha = a.alpha, beta = a.beta;
#pragma omp parallel for num_threads(pass_threads(nt, a.n * a.units)) schedule(static)
  for (int64_t i = 0; i < a.n; ++i) {
    const T *d = dist + i * ld;
    T *yr = y + i * a.ldy;
    for (int64_t j = 0; j < a.units; ++j) {
      const T v = std::exp(-gamma[j] * d[j]);
      yr[j] = beta == 0.0 ? (T)(alpha * v) : (T)(alpha * v + beta * yr[j]);
    }
  }
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
#pragma omp parallel for num_threads(pass_threads(nt, n * units)) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    T *gr = g.data() + i * ldg;
    const T *yr = y + i * a.ldy, *dyr = dy + i * a.lddy;
    for (int64_t j = 0; j < units; ++j) gr[j] = -gamma[j] * yr[j] * dyr[j];
  }
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
#pragma omp parallel for num_threads(pass_threads(nt, n * (units + in))) schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      const T *gr = g.data() + i * ldg;
      double rs = 0.0;
      for (int64_t j = 0; j < units; ++j) rs += (double)gr[j];
      const T s = (T)(two_alpha * rs);
      const T *xr = x + i * a.ldx;
      T *dxr = dx + i * a.lddx;
      for (int64_t k = 0; k < in; ++k) dxr[k] += s * xr[k];
    }
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
#pragma omp parallel for num_threads(pass_threads(nt, units * in)) schedule(static)
    for (int64_t j = 0; j < units; ++j) {
      const T s = (T)(two_alpha * colsum[j]);
      const T *cr = c + j * a.ldc;
      T *dcr = dc + j * a.lddc;
      for (int64_t k = 0; k < in; ++k) dcr[k] += s * cr[k];
    }
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
