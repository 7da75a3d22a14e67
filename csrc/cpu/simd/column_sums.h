// simd/column_sums.h -- db = alpha * sum over rows of dy + beta * db, vectorized. Part of simd_impl.h.
#ifndef LW_SIMD_IMPL_INCLUDED_IN_ANON_NS
#error "include through simd_impl.h, inside an anonymous namespace of an ISA TU"
#endif

// db (out) = alpha * sum_rows dy (n, out) + beta * db: blocks of 8W columns kept
// in registers while the rows stream by.
template <class X>
void column_sums(const typename X::T *dy, int64_t lddy, int64_t n, int64_t out,
                 typename X::T *db, double alpha, double beta, int nthreads) {
  using T = typename X::T;
  using V = typename X::V;
  constexpr int W = X::W, CB = 8 * W;
  const int64_t blocks = cdiv(out, CB);
  const int nt = threads_for(n * out, grain::kStream, (int)imin(nthreads, blocks));
  parallel_chunks(nt, blocks, 1, [&](int64_t bl) {
    const int64_t j0 = bl * CB;
    const int w = (int)imin(CB, out - j0);
    V acc[8];
    for (int q = 0; q < 8; ++q) acc[q] = X::zero();
    if (w == CB) {
      for (int64_t i = 0; i < n; ++i) {
        const T *r = dy + i * lddy + j0;
#pragma GCC unroll 8
        for (int q = 0; q < 8; ++q) acc[q] = X::add(acc[q], X::load(r + q * W));
      }
    } else {
      for (int64_t i = 0; i < n; ++i) {
        const T *r = dy + i * lddy + j0;
        for (int q = 0; q < 8; ++q) {
          const int m = (int)imax(0, imin(W, w - q * W));
          if (m) acc[q] = X::add(acc[q], X::loadn(r + q * W, m));
        }
      }
    }
    const V va = X::set1((T)alpha), vb = X::set1((T)beta);
    for (int q = 0; q < 8; ++q) {
      const int m = (int)imax(0, imin(W, w - q * W));
      if (!m) break;
      V v = X::mul(va, acc[q]);
      if (beta != 0) v = X::fma(vb, X::loadn(db + j0 + q * W, m), v);
      X::storen(db + j0 + q * W, v, m);
    }
  });
}
