// simd/softmax.h -- the row-wise softmax, vectorized. Part of simd_impl.h.
#ifndef LW_SIMD_IMPL_INCLUDED_IN_ANON_NS
#error "include through simd_impl.h, inside an anonymous namespace of an ISA TU"
#endif

// Row-wise softmax: max, sum of exp, scale; three passes over a row that is hot in L1/L2.
template <class X>
void softmax(const SoftmaxArgs &a, int nthreads) {
  using T = typename X::T;
  using V = typename X::V;
  constexpr int W = X::W;
  const T *x = static_cast<const T *>(a.x);
  T *y = static_cast<T *>(a.y);
  const int64_t cols = a.cols;
  if (cols <= 0) return;
  const int nt = ew_threads(nthreads, a.rows * a.cols);
  const T alpha = (T)a.alpha, beta = (T)a.beta;
  parallel_chunks(nt, a.rows, imax(1, a.rows / (8 * nt)), [&](int64_t i) {
    const T *xr = x + i * a.ldx;
    T *yr = y + i * a.ldy;
    V mv = X::set1(xr[0]);
    for (int64_t j = 0; j < cols; j += W) {
      const int m = (int)imin(W, cols - j);
      mv = X::max(mv, m == W ? X::load(xr + j) : X::loadn_fill(xr + j, m, xr[0]));
    }
    const T mx = X::hmax(mv);
    const V vm = X::set1(mx);
    V sv = X::zero();
    for (int64_t j = 0; j < cols; j += W) {
      const int m = (int)imin(W, cols - j);
      const V e = X::exp(X::sub(m == W ? X::load(xr + j) : X::loadn(xr + j, m), vm));
      sv = X::add(sv, m == W ? e : X::and_first(e, m));
    }
    const T inv = T(1) / X::hsum(sv);
    const V vs = X::set1(inv * alpha), vb = X::set1(beta);
    for (int64_t j = 0; j < cols; j += W) {
      const int m = (int)imin(W, cols - j);
      V v = X::mul(X::exp(X::sub(m == W ? X::load(xr + j) : X::loadn(xr + j, m), vm)), vs);
      if (beta != 0) v = X::fma(vb, m == W ? X::load(yr + j) : X::loadn(yr + j, m), v);
      if (m == W) X::store(yr + j, v);
      else X::storen(yr + j, v, m);
    }
  });
}
