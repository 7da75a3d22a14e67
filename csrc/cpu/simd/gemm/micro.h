// simd/gemm/micro.h -- the GEMM's register-blocked micro-kernel and its fused
// epilogue (bias, activation, alpha/beta). Part of simd_impl.h.
#ifndef LW_SIMD_IMPL_INCLUDED_IN_ANON_NS
#error "include through simd_impl.h, inside an anonymous namespace of an ISA TU"
#endif

template <class T>
struct Ep {
  T alpha, beta;
  int act;
};

// Writes one vector of n <= W outputs of a C row. C holds raw partial sums
// between K blocks (first/last say which block this is); the bias, activation
// and alpha/beta blend happen only on the last, while the tile is in registers.
template <class X>
inline __attribute__((always_inline)) void epi(typename X::T *c, typename X::V v, int n,
                                               const typename X::T *bias,
                                               const Ep<typename X::T> &ep, bool first,
                                               bool last) {
  const bool full = n == X::W;
  if (!first) v = X::add(v, full ? X::load(c) : X::loadn(c, n));
  if (last) {
    if (bias) v = X::add(v, full ? X::load(bias) : X::loadn(bias, n));
    v = act_v<X>(ep.act, v);
    v = X::mul(X::set1(ep.alpha), v);
    if (ep.beta != 0) v = X::fma(X::set1(ep.beta), full ? X::load(c) : X::loadn(c, n), v);
  }
  if (full) X::store(c, v);
  else X::storen(c, v, n);
}

// The register-blocked micro-kernel: a (MRr, 2W) tile of C over kc steps.
// AP: A is a packed panel [k][MR]; otherwise A(i, k) = a[i*a_rs + k*a_ks].
// BM: B columns beyond nr are not readable (unpacked B at the right edge).
// B(k, j) = b[k*b_ks + j].
template <class X, int MRr, bool AP, bool BM>
inline __attribute__((always_inline)) void micro(int64_t kc, const typename X::T *a, int64_t a_rs,
                                                 int64_t a_ks, const typename X::T *b,
                                                 int64_t b_ks, int mr, int nr,
                                                 typename X::T *c, int64_t ldc,
                                                 const typename X::T *bias,
                                                 const Ep<typename X::T> &ep, bool first,
                                                 bool last) {
  using V = typename X::V;
  constexpr int W = X::W;
  const int n0 = nr < W ? nr : W;
  const int n1 = nr > W ? nr - W : 0;
  // The C tile is touched only after the k loop; request its lines now so the
  // (L3/DRAM) misses overlap the FMAs instead of stalling the epilogue.
#pragma GCC unroll 32
  for (int i = 0; i < MRr; ++i) {
    if (i < mr) {
      __builtin_prefetch(c + i * ldc, 1, 3);
      __builtin_prefetch(c + i * ldc + 2 * W - 1, 1, 3);
    }
  }
  V acc[MRr][2];
#pragma GCC unroll 32
  for (int i = 0; i < MRr; ++i) acc[i][0] = acc[i][1] = X::zero();
  for (int64_t k = 0; k < kc; ++k) {
    V b0, b1;
    if (BM) {
      b0 = X::loadn(b, n0);
      b1 = X::loadn(b + W, n1);
    } else {
      b0 = X::load(b);
      b1 = X::load(b + W);
    }
#pragma GCC unroll 32
    for (int i = 0; i < MRr; ++i) {
      const V ai = X::set1(AP ? a[i] : a[i * a_rs]);
      acc[i][0] = X::fma(ai, b0, acc[i][0]);
      acc[i][1] = X::fma(ai, b1, acc[i][1]);
    }
    a += AP ? X::MR : a_ks;
    b += b_ks;
  }
#pragma GCC unroll 32
  for (int i = 0; i < MRr; ++i) {
    if (i >= mr) break;
    typename X::T *cr = c + i * ldc;
    epi<X>(cr, acc[i][0], n0, bias, ep, first, last);
    if (n1 > 0) epi<X>(cr + W, acc[i][1], n1, bias ? bias + W : nullptr, ep, first, last);
  }
}
