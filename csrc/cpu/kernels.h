// kernels.h -- plain extern entry points of the ISA-specific kernel TUs
// (kernels_avx512.cpp, kernels_avx2.cpp). Only declarations live here, so no
// inline code compiled with wider ISA flags can leak into the generic build.
// Each returns false when it does not handle the case (caller uses the reference).
// gemm_*: rowsum (M, may be null) = alpha * sum_k op(A)(i, k) + beta * rowsum,
// done in the same pass where the path allows; *rowsum_done says whether it was.
#pragma once

#include <cstdint>

#include "../common/backend.h"
#include "isa.h"

namespace lw::cpu {

// The RBF forward's epilogue (simd/rbf.h): t (n, units) the cross term -2 x c^T,
// xn (n) and cn (units) the squared row norms of x and c, gamma (units); all in
// the dtype's element type. y may be t.
struct RbfEpilogueArgs {
  DType dtype;
  int64_t n, units;
  const void *t; int64_t ldt;
  const void *xn, *cn, *gamma;
  void *y; int64_t ldy;
  double alpha, beta;
};

#define LW_DECLARE_ISA_KERNELS(isa)                                                          \
  bool gemm_f32_##isa(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float *A,      \
                      int64_t lda, const float *B, int64_t ldb, float *C, int64_t ldc,        \
                      double alpha, double beta, const float *bias, int act, int nthreads,    \
                      float *rowsum, bool *rowsum_done);                                      \
  bool gemm_f64_##isa(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const double *A,     \
                      int64_t lda, const double *B, int64_t ldb, double *C, int64_t ldc,      \
                      double alpha, double beta, const double *bias, int act, int nthreads,   \
                      double *rowsum, bool *rowsum_done);                                     \
  bool activation_forward_##isa(const ActivationForwardArgs &a, int nthreads);                \
  bool activation_backward_##isa(const ActivationBackwardArgs &a, int nthreads);              \
  bool softmax_##isa(const SoftmaxArgs &a, int nthreads);                                     \
  bool loss_##isa(const LossArgs &a, int nthreads, double *value);                            \
  bool column_sums_##isa(DType dt, const void *dy, int64_t lddy, int64_t n, int64_t out,      \
                         void *db, double alpha, double beta, int nthreads);                 \
  bool rbf_epilogue_##isa(const RbfEpilogueArgs &a, int nthreads);                         \
  bool bernoulli_##isa(const BernoulliArgs &a, int nthreads);

#ifdef LAYERWISE_HAVE_AVX512
LW_DECLARE_ISA_KERNELS(avx512)
#endif
#ifdef LAYERWISE_HAVE_AVX2
LW_DECLARE_ISA_KERNELS(avx2)
#endif

#undef LW_DECLARE_ISA_KERNELS

// LW_ISA_DISPATCH(name, args...): calls name_avx512(args...) or name_avx2(args...)
// for the ISA chosen at run time (isa.h) and yields its bool; false on the
// generic ISA, where the caller runs its reference loop.
#ifdef LAYERWISE_HAVE_AVX512
#define LW_ISA_CASE_AVX512(name, ...) \
  case Isa::Avx512:                   \
    return name##_avx512(__VA_ARGS__);
#else
#define LW_ISA_CASE_AVX512(name, ...)
#endif
#ifdef LAYERWISE_HAVE_AVX2
#define LW_ISA_CASE_AVX2(name, ...) \
  case Isa::Avx2:                   \
    return name##_avx2(__VA_ARGS__);
#else
#define LW_ISA_CASE_AVX2(name, ...)
#endif
#define LW_ISA_DISPATCH(name, ...)                                                   \
  [&]() -> bool {                                                                    \
    switch (active()) {                                                              \
      LW_ISA_CASE_AVX512(name, __VA_ARGS__) LW_ISA_CASE_AVX2(name, __VA_ARGS__) default : \
        return false;                                                                \
    }                                                                                \
  }()

}  // namespace lw::cpu
