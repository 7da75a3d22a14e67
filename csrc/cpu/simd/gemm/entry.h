// simd/gemm/entry.h -- the GEMM's choice between its paths. Part of simd_impl.h.
#ifndef LW_SIMD_IMPL_INCLUDED_IN_ANON_NS
#error "include through simd_impl.h, inside an anonymous namespace of an ISA TU"
#endif

// C = alpha * S + beta * C after S was computed (in place of C's scratch copy).
template <class X>
void blend_into(int64_t M, int64_t N, const typename X::T *S, typename X::T *C, int64_t ldc,
                typename X::T alpha, typename X::T beta) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = alpha * S[i * N + j] + beta * C[i * ldc + j];
}

// Entry point. trans_a && trans_b is not used by the dense layers and returns
// false so the caller falls back to the reference.
template <class X>
bool gemm_entry(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const typename X::T *A,
                int64_t lda, const typename X::T *B, int64_t ldb, typename X::T *C, int64_t ldc,
                double alpha, double beta, const typename X::T *bias, int act, int nthreads,
                typename X::T *rowsum, bool *rowsum_done) {
  using T = typename X::T;
  *rowsum_done = false;
  if (ta && tb) return false;
  if (M <= 0 || N <= 0) return true;
  if (K <= 0) return false;
  Ep<T> ep{(T)alpha, (T)beta, act};
  if (!ta && tb && (M <= 32 || N <= 16)) {
    // One or two rows of x: all DM x DN accumulators on distinct rows of w.
    if (M == 1) gemm_dot<X, 1, (2 * X::DN <= X::W ? 2 * X::DN : X::W)>(M, N, K, A, lda, B, ldb, C, ldc, bias, ep, nthreads);
    else if (M == 2) gemm_dot<X, 2, (2 * X::DN <= X::W ? 2 * X::DN : X::W)>(M, N, K, A, lda, B, ldb, C, ldc, bias, ep, nthreads);
    else gemm_dot<X, X::DM, X::DN>(M, N, K, A, lda, B, ldb, C, ldc, bias, ep, nthreads);
    return true;
  }
  if (!tb && (M <= 32 || (ta && K <= 16))) {
    gemm_direct<X>(ta, M, N, K, A, lda, B, ldb, C, ldc, bias, ep, nthreads);
    return true;
  }
  // Row sums of op(A) (db) ride along with the packing of A = dy^T.
  const GemmBlocks blk = gemm_blocks((int)sizeof(T), MicroTile{X::MR, 2 * X::W}, shape_class(M, N, K), nullptr);
  double *rs = rowsum && ta ? static_cast<double *>(std::calloc((size_t)M, sizeof(double))) : nullptr;
  if (rs) *rowsum_done = true;
  if (K > blk.kc && beta != 0) {
    // Partial sums live in C between K blocks, so the old C must be set aside.
    T *S = static_cast<T *>(std::malloc(sizeof(T) * M * N));
    if (!S) {
      std::free(rs);
      *rowsum_done = false;
      return false;
    }
    Ep<T> ep1{T(1), T(0), act};
    const bool ok = gemm_packed<X>(ta, tb, M, N, K, A, lda, B, ldb, S, N, bias, ep1, nthreads, blk, rs);
    if (ok) blend_into<X>(M, N, S, C, ldc, (T)alpha, (T)beta);
    std::free(S);
    if (!ok) {
      std::free(rs);
      *rowsum_done = false;
      return false;
    }
  } else if (!gemm_packed<X>(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, bias, ep, nthreads, blk, rs)) {
    std::free(rs);
    *rowsum_done = false;
    return false;
  }
  if (rs) {
    for (int64_t i = 0; i < M; ++i)
      rowsum[i] = (T)(beta == 0 ? alpha * rs[i] : alpha * rs[i] + beta * (double)rowsum[i]);
    std::free(rs);
  }
  return true;
}
