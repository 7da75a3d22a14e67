// simd/rbf.h -- the radial basis function epilogue, vectorized. Part of simd_impl.h.
#ifndef LW_SIMD_IMPL_INCLUDED_IN_ANON_NS
#error "include through simd_impl.h, inside an anonymous namespace of an ISA TU"
#endif

// One pass over the cross term t = -2 x c^T (n, units) from the GEMM:
//   y_ij = alpha * exp(-gamma_j * max(0, xn_i + cn_j + t_ij)) + beta * y_ij,
// with xn, cn the squared row norms of x and c (in T). The max clamps the
// expansion's small negative values (cancellation when x_i is close to c_j).
// The exponential is the traits' X::exp, the one sigmoid and softmax use.
// t may be y itself (beta == 0): each element is read before it is written.
template <class X>
void rbf_epilogue(const RbfEpilogueArgs &a, int nthreads) {
  using T = typename X::T;
  using V = typename X::V;
  constexpr int W = X::W;
  const T *t = static_cast<const T *>(a.t);
  const T *xn = static_cast<const T *>(a.xn), *cn = static_cast<const T *>(a.cn);
  const T *gamma = static_cast<const T *>(a.gamma);
  T *y = static_cast<T *>(a.y);
  const int64_t units = a.units;
  if (units <= 0 || a.n <= 0) return;
  const int nt = ew_threads(nthreads, a.n * units);
  const V va = X::set1((T)a.alpha), vb = X::set1((T)a.beta), zero = X::zero();
  const bool blend = a.beta != 0.0;
  parallel_chunks(nt, a.n, imax(1, a.n / (8 * nt)), [&](int64_t i) {
    const T *tr = t + i * a.ldt;
    T *yr = y + i * a.ldy;
    const V vx = X::set1(xn[i]);
    for (int64_t j = 0; j < units; j += W) {
      const int m = (int)imin(W, units - j);
      const bool full = m == W;
      const V tv = full ? X::load(tr + j) : X::loadn(tr + j, m);
      const V cv = full ? X::load(cn + j) : X::loadn(cn + j, m);
      const V gv = full ? X::load(gamma + j) : X::loadn(gamma + j, m);
      const V d = X::max(zero, X::add(X::add(vx, cv), tv));
      V v = X::mul(va, X::exp(X::sub(zero, X::mul(gv, d))));
      if (blend) v = X::fma(vb, full ? X::load(yr + j) : X::loadn(yr + j, m), v);
      if (full) X::store(yr + j, v);
      else X::storen(yr + j, v, m);
    }
  });
}
