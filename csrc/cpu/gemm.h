// gemm.h -- the CPU matrix product behind every dense-layer primitive.
//
//   C (M, N) = alpha * act(op(A) (M, K) * op(B) (K, N) + bias (N)) + beta * C
//
// op(A) = A stored (M, K) row-major with row stride lda, or, with trans_a,
// A^T where A is stored (K, M). op(B) likewise: B stored (K, N), or with trans_b
// B^T where B is stored (N, K). No transpose is ever materialized by the caller.
// The three dense-layer products are
//   forward        y  = x  w^T : gemm(false, true ) with A = x  (n, in), B = w (out, in)
//   backward data  dx = dy w   : gemm(false, false) with A = dy (n, out), B = w (out, in)
//   backward wts   dw = dy^T x : gemm(true,  false) with A = dy (n, out), B = x (n, in)
// beta == 0 never reads C. bias may be null; act is applied after the bias.
#pragma once

#include <cstdint>

#include "layerwise/layerwise.h"

namespace lw::cpu {

template <typename T>
struct GemmEpilogue {
  double alpha = 1.0;
  double beta = 0.0;
  const T *bias = nullptr;  // length N
  lwActivationMode_t act = LW_ACTIVATION_IDENTITY;
};

template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const T *A, int64_t lda,
          const T *B, int64_t ldb, T *C, int64_t ldc, const GemmEpilogue<T> &ep, int nthreads);

// gemm() that may also produce rowsum (M) = alpha * sum_k op(A)(i, k) + beta * rowsum
// in the same pass (the dense layer's db while dy^T is packed). Returns whether
// it did; when false the caller computes rowsum itself. C is computed either way.
template <typename T>
bool gemm_rowsum(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const T *A,
                 int64_t lda, const T *B, int64_t ldb, T *C, int64_t ldc, const GemmEpilogue<T> &ep,
                 int nthreads, T *rowsum);

// The straightforward reference product (same contract). The tests compare the
// optimized kernels against NumPy; this one is kept for the generic ISA path.
template <typename T>
void gemm_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const T *A,
                    int64_t lda, const T *B, int64_t ldb, T *C, int64_t ldc,
                    const GemmEpilogue<T> &ep, int nthreads);

}  // namespace lw::cpu
