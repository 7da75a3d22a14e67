// gemm_reference.cpp -- a plain, correct matrix product with the fused epilogue
// (see gemm.h), and the gemm() dispatcher that prefers the ISA kernels. The
// reference is parallel over rows of C; each share accumulates one row of C at
// a time in a private buffer, then applies bias, activation and alpha/beta blending.
#include <algorithm>
#include <vector>

#include "../common/activation_math.h"
#include "gemm.h"
#include "isa.h"
#include "kernels.h"
#include "threadpool.h"

namespace lw::cpu {

template <typename T>
void gemm_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const T *A,
                    int64_t lda, const T *B, int64_t ldb, T *C, int64_t ldc,
                    const GemmEpilogue<T> &ep, int nthreads) {
  if (M <= 0 || N <= 0) return;
  const int nt = threads_for(2 * M * N * K, grain::kGemmFlops, std::min<int64_t>(nthreads, M));
  // One accumulator row per share, allocated before any work starts (the
  // vector may throw; it must not do so on a pool thread).
  std::vector<std::vector<T>> acc_rows(nt, std::vector<T>(N));
  run_parallel(nt, [&](int t, int n) {
    std::vector<T> &acc = acc_rows[t];
    for (int64_t i = M * t / n; i < M * (t + 1) / n; ++i) {
      std::fill(acc.begin(), acc.end(), T(0));
      for (int64_t k = 0; k < K; ++k) {
        const T a = trans_a ? A[k * lda + i] : A[i * lda + k];
        if (!trans_b) {
          const T *b = B + k * ldb;  // (N)
          for (int64_t j = 0; j < N; ++j) acc[j] += a * b[j];
        } else {
          for (int64_t j = 0; j < N; ++j) acc[j] += a * B[j * ldb + k];
        }
      }
      T *c = C + i * ldc;
      for (int64_t j = 0; j < N; ++j) {
        T v = acc[j] + (ep.bias ? ep.bias[j] : T(0));
        v = activate(ep.act, v);
        c[j] = blend(ep.alpha, ep.beta, v, c + j);
      }
    }
  });
}

template void gemm_reference<float>(bool, bool, int64_t, int64_t, int64_t, const float *, int64_t,
                                    const float *, int64_t, float *, int64_t,
                                    const GemmEpilogue<float> &, int);
template void gemm_reference<double>(bool, bool, int64_t, int64_t, int64_t, const double *,
                                     int64_t, const double *, int64_t, double *, int64_t,
                                     const GemmEpilogue<double> &, int);

// gemm() runs the packed/vectorized kernels of the active ISA (kernels_*.cpp)
// and falls back to the reference for the generic ISA and for cases those do
// not take (trans_a && trans_b, K == 0).
namespace {
bool gemm_isa(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
              const float *B, int64_t ldb, float *C, int64_t ldc, const GemmEpilogue<float> &ep,
              int nt, float *rowsum, bool *rs_done) {
  *rs_done = false;
  return LW_ISA_DISPATCH(gemm_f32, ta, tb, M, N, K, A, lda, B, ldb, C, ldc, ep.alpha, ep.beta, ep.bias,
                         (int)ep.act, nt, rowsum, rs_done);
}
bool gemm_isa(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const double *A, int64_t lda,
              const double *B, int64_t ldb, double *C, int64_t ldc,
              const GemmEpilogue<double> &ep, int nt, double *rowsum, bool *rs_done) {
  *rs_done = false;
  return LW_ISA_DISPATCH(gemm_f64, ta, tb, M, N, K, A, lda, B, ldb, C, ldc, ep.alpha, ep.beta, ep.bias,
                         (int)ep.act, nt, rowsum, rs_done);
}
}  // namespace

template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const T *A, int64_t lda,
          const T *B, int64_t ldb, T *C, int64_t ldc, const GemmEpilogue<T> &ep, int nthreads) {
  bool rs_done;
  if (gemm_isa(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc, ep, nthreads, nullptr, &rs_done))
    return;
  gemm_reference(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc, ep, nthreads);
}

template <typename T>
bool gemm_rowsum(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const T *A,
                 int64_t lda, const T *B, int64_t ldb, T *C, int64_t ldc, const GemmEpilogue<T> &ep,
                 int nthreads, T *rowsum) {
  bool rs_done = false;
  if (gemm_isa(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc, ep, nthreads, rowsum, &rs_done))
    return rs_done;
  gemm_reference(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc, ep, nthreads);
  return false;
}
template bool gemm_rowsum<float>(bool, bool, int64_t, int64_t, int64_t, const float *, int64_t,
                                 const float *, int64_t, float *, int64_t,
                                 const GemmEpilogue<float> &, int, float *);
template bool gemm_rowsum<double>(bool, bool, int64_t, int64_t, int64_t, const double *, int64_t,
                                  const double *, int64_t, double *, int64_t,
                                  const GemmEpilogue<double> &, int, double *);
template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, const float *, int64_t,
                          const float *, int64_t, float *, int64_t, const GemmEpilogue<float> &,
                          int);
template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, const double *, int64_t,
                           const double *, int64_t, double *, int64_t,
                           const GemmEpilogue<double> &, int);

}  // namespace lw::cpu
