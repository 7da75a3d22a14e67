// simd/gemm/small.h -- the unpacked small-batch GEMM paths. Part of simd_impl.h.
#ifndef LW_SIMD_IMPL_INCLUDED_IN_ANON_NS
#error "include through simd_impl.h, inside an anonymous namespace of an ISA TU"
#endif

// ---- unpacked paths for small batches ----------------------------------------------
// op(B) = B row-major (no transpose): stream B straight from memory, whole K per
// tile; A read in place through strides. Used for dy w (n small) and dy^T x
// (n = K small), where packing would move more bytes than the product does.
template <class X, int MRr>
inline void direct_tile(int64_t K, const typename X::T *a, int64_t a_rs, int64_t a_ks,
                        const typename X::T *b, int64_t ldb, int mr, int nr, typename X::T *c,
                        int64_t ldc, const typename X::T *bias, const Ep<typename X::T> &ep) {
  if (nr == 2 * X::W)
    micro<X, MRr, false, false>(K, a, a_rs, a_ks, b, ldb, mr, nr, c, ldc, bias, ep, true, true);
  else
    micro<X, MRr, false, true>(K, a, a_rs, a_ks, b, ldb, mr, nr, c, ldc, bias, ep, true, true);
}

template <class X, int MRr>
inline void direct_tile_rows(int mr, int64_t K, const typename X::T *a, int64_t a_rs,
                             int64_t a_ks, const typename X::T *b, int64_t ldb, int nr,
                             typename X::T *c, int64_t ldc, const typename X::T *bias,
                             const Ep<typename X::T> &ep) {
  if constexpr (MRr > 1) {
    if (mr < MRr) {
      direct_tile_rows<X, MRr - 1>(mr, K, a, a_rs, a_ks, b, ldb, nr, c, ldc, bias, ep);
      return;
    }
  }
  direct_tile<X, MRr>(K, a, a_rs, a_ks, b, ldb, mr, nr, c, ldc, bias, ep);
}

template <class X>
void gemm_direct(bool ta, int64_t M, int64_t N, int64_t K, const typename X::T *A, int64_t lda,
                 const typename X::T *B, int64_t ldb, typename X::T *C, int64_t ldc,
                 const typename X::T *bias, const Ep<typename X::T> &ep, int nthreads) {
  constexpr int MR = X::MR, NR = 2 * X::W;
  const int64_t a_rs = ta ? 1 : lda, a_ks = ta ? lda : 1;
  const int64_t mt = cdiv(M, MR), ntl = cdiv(N, NR), tiles = mt * ntl;
  const int nt = threads_for(2 * M * N * K, grain::kGemvFlops, (int)imin(nthreads, tiles));
  // Tiles are ordered column-block major so consecutive tiles reuse one B strip.
  // Few rows of C: column-block major, so each thread streams its own slice of B.
  // Small K (B and A tiny): row major, so C is written row by row.
  const bool rows_first = K <= 48 && mt > 1;
  parallel_chunks(nt, tiles, imax(1, tiles / (8 * nt)), [&](int64_t t) {
    const int64_t jt = rows_first ? t % ntl : t / mt, it = rows_first ? t / ntl : t % mt;
    const int64_t i0 = it * MR, j0 = jt * NR;
    const int mr = (int)imin(MR, M - i0), nr = (int)imin(NR, N - j0);
    direct_tile_rows<X, MR>(mr, K, A + i0 * a_rs, a_rs, a_ks, B + j0, ldb, nr, C + i0 * ldc + j0,
                            ldc, bias ? bias + j0 : nullptr, ep);
  });
}

// op(A) = A, op(B) = B^T with both K-contiguous (the forward x w^T) and few rows
// on one side: dot products over K, DM x DN of them at once, no packing at all.
template <class X, int DM, int DN>
void gemm_dot(int64_t M, int64_t N, int64_t K, const typename X::T *A, int64_t lda,
              const typename X::T *B, int64_t ldb, typename X::T *C, int64_t ldc,
              const typename X::T *bias, const Ep<typename X::T> &ep, int nthreads) {
  using T = typename X::T;
  using V = typename X::V;
  constexpr int W = X::W;
  static_assert(DN <= W, "one vector of results per row");
  const int64_t mt = cdiv(M, DM), ntl = cdiv(N, DN), tiles = mt * ntl;
  const int nt = threads_for(2 * M * N * K, grain::kGemvFlops, (int)imin(nthreads, tiles));
  const int64_t kv = K / W * W;
  const int kt = (int)(K - kv);
  // Tiles ordered B-block major: each thread streams a contiguous slice of B (w).
  parallel_chunks(nt, tiles, imax(1, tiles / (8 * nt)), [&](int64_t t) {
    const int64_t jt = t / mt, it = t % mt;
    const int64_t i0 = it * DM, j0 = jt * DN;
    const int mr = (int)imin(DM, M - i0), nr = (int)imin(DN, N - j0);
    const T *ap[DM];
    const T *bp[DN];
    for (int i = 0; i < DM; ++i) ap[i] = A + imin(i0 + i, M - 1) * lda;
    for (int j = 0; j < DN; ++j) bp[j] = B + imin(j0 + j, N - 1) * ldb;
    V acc[DM][DN];
#pragma GCC unroll 16
    for (int i = 0; i < DM; ++i)
#pragma GCC unroll 16
      for (int j = 0; j < DN; ++j) acc[i][j] = X::zero();
    for (int64_t k = 0; k < kv; k += W) {
      V av[DM], bv[DN];
#pragma GCC unroll 16
      for (int i = 0; i < DM; ++i) av[i] = X::load(ap[i] + k);
#pragma GCC unroll 16
      for (int j = 0; j < DN; ++j) bv[j] = X::load(bp[j] + k);
#pragma GCC unroll 16
      for (int i = 0; i < DM; ++i)
#pragma GCC unroll 16
        for (int j = 0; j < DN; ++j) acc[i][j] = X::fma(av[i], bv[j], acc[i][j]);
    }
    if (kt) {
      V av[DM], bv[DN];
      for (int i = 0; i < DM; ++i) av[i] = X::loadn(ap[i] + kv, kt);
      for (int j = 0; j < DN; ++j) bv[j] = X::loadn(bp[j] + kv, kt);
      for (int i = 0; i < DM; ++i)
        for (int j = 0; j < DN; ++j) acc[i][j] = X::fma(av[i], bv[j], acc[i][j]);
    }
    for (int i = 0; i < mr; ++i) {
      alignas(64) T row[W];
      for (int j = 0; j < DN; ++j) row[j] = X::hsum(acc[i][j]);
      epi<X>(C + (i0 + i) * ldc + j0, X::loadn(row, nr), nr, bias ? bias + j0 : nullptr, ep, true,
             true);
    }
  });
}
