// simd_impl.h -- the vectorized CPU kernels, written once against a vector
// "traits" type X and instantiated by each ISA translation unit
// (kernels_avx512.cpp, kernels_avx2.cpp). One file per kernel family under
// simd/ (the GEMM in simd/gemm/); this file includes them in dependency order
// and defines the ISA entry points.
//
// Include ONLY from an ISA TU, inside an anonymous namespace, after defining the
// traits: every function here is then local to that TU, so the linker can never
// pick an AVX-512 copy for generic code (the ODR trap). For the same reason these
// files use no std:: templates (no std::min, std::vector, <algorithm>), and the
// pool helpers of threadpool.h they use are templates instantiated only with
// lambdas local to the TU.
//
// Traits X provide: T (float/double), V (vector), W (lanes), MR (micro-tile rows),
// DM/DN (dot-product tile), zero/set1/load/loadn/store/storen (n-lane masked),
// add/sub/mul/fma/max, hsum/hmax, exp/sigmoid/tanh/relu/thresh/select_gt0, and
// pack_a / pack_bt (a full MR-row A panel, a full NR-row transposed B panel; may
// fall back to pack_a_scalar / pack_bt_scalar).

#ifndef LW_SIMD_IMPL_INCLUDED_IN_ANON_NS
#error "include simd_impl.h inside an anonymous namespace of an ISA TU"
#endif

#include "simd/threading.h"
#include "simd/activation.h"
#include "simd/gemm/micro.h"
#include "simd/gemm/pack.h"
#include "simd/gemm/packed.h"
#include "simd/gemm/small.h"
#include "simd/gemm/entry.h"
#include "simd/softmax.h"
#include "simd/column_sums.h"
#include "simd/loss.h"
#include "simd/rbf.h"

// The extern entry points of one ISA TU, for traits F (float) and D (double).
#define LW_DEFINE_ISA_ENTRIES(isa, F, D)                                                        \
  }                                                                                             \
  bool gemm_f32_##isa(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float *A,         \
                      int64_t lda, const float *B, int64_t ldb, float *C, int64_t ldc,           \
                      double alpha, double beta, const float *bias, int act, int nthreads,       \
                      float *rowsum, bool *rowsum_done) {                                        \
    return gemm_entry<F>(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, alpha, beta, bias, act,         \
                         nthreads, rowsum, rowsum_done);                                        \
  }                                                                                             \
  bool gemm_f64_##isa(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const double *A,        \
                      int64_t lda, const double *B, int64_t ldb, double *C, int64_t ldc,         \
                      double alpha, double beta, const double *bias, int act, int nthreads,      \
                      double *rowsum, bool *rowsum_done) {                                       \
    return gemm_entry<D>(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, alpha, beta, bias, act,         \
                         nthreads, rowsum, rowsum_done);                                        \
  }                                                                                             \
  bool activation_forward_##isa(const ActivationForwardArgs &a, int nthreads) {                  \
    if (a.dtype == DType::F32) act_forward<F>(a, nthreads);                                     \
    else act_forward<D>(a, nthreads);                                                           \
    return true;                                                                                \
  }                                                                                             \
  bool activation_backward_##isa(const ActivationBackwardArgs &a, int nthreads) {                \
    if (a.dtype == DType::F32) act_backward<F>(a, nthreads);                                    \
    else act_backward<D>(a, nthreads);                                                          \
    return true;                                                                                \
  }                                                                                             \
  bool softmax_##isa(const SoftmaxArgs &a, int nthreads) {                                       \
    if (a.dtype == DType::F32) softmax<F>(a, nthreads);                                         \
    else softmax<D>(a, nthreads);                                                               \
    return true;                                                                                \
  }                                                                                             \
  bool loss_##isa(const LossArgs &a, int nthreads, double *value) {                             \
    if (a.dtype != DType::F32 || a.rows <= 0) return false;                                     \
    if (a.loss == LW_LOSS_QUADRATIC) *value = quadratic_loss<F>(a, nthreads);                    \
    else if (a.loss == LW_LOSS_SOFTMAX_CROSS_ENTROPY) *value = softmax_xent_loss<F>(a, nthreads); \
    else return false;                                                                          \
    return true;                                                                                \
  }                                                                                             \
  bool column_sums_##isa(DType dt, const void *dy, int64_t lddy, int64_t n, int64_t out,         \
                         void *db, double alpha, double beta, int nthreads) {                    \
    if (dt == DType::F32)                                                                       \
      column_sums<F>(static_cast<const float *>(dy), lddy, n, out, static_cast<float *>(db),    \
                     alpha, beta, nthreads);                                                    \
    else                                                                                        \
      column_sums<D>(static_cast<const double *>(dy), lddy, n, out, static_cast<double *>(db),  \
                     alpha, beta, nthreads);                                                    \
    return true;                                                                                \
  }                                                                                             \
  bool rbf_epilogue_##isa(const RbfEpilogueArgs &a, int nthreads) {                             \
    if (a.dtype == DType::F32) rbf_epilogue<F>(a, nthreads);                                    \
    else rbf_epilogue<D>(a, nthreads);                                                          \
    return true;                                                                                \
  }                                                                                             \
  namespace {
