// simd/loss.h -- float32 quadratic and softmax cross-entropy losses, value and
// gradient in one pass; float64 and BCE stay on the scalar reference (cpu/loss.cpp).
// Part of simd_impl.h.
#ifndef LW_SIMD_IMPL_INCLUDED_IN_ANON_NS
#error "include through simd_impl.h, inside an anonymous namespace of an ISA TU"
#endif

// Per-row values are summed by sum_rows (threadpool.h), deterministically.

// 0.5/n * sum (p - t)^2 and grad (p - t)/n, one pass.
template <class X>
double quadratic_loss(const LossArgs &a, int nthreads) {
  using T = typename X::T;
  using V = typename X::V;
  constexpr int W = X::W;
  const T *p = static_cast<const T *>(a.pred), *tg = static_cast<const T *>(a.target);
  T *g = static_cast<T *>(a.grad);
  const double inv_n = 1.0 / (double)a.rows;
  const V vin = X::set1((T)inv_n);
  const int64_t cols = a.cols;
  const double total = sum_rows(a.rows, ew_threads(nthreads, a.rows * cols), [&](int64_t r) {
    const T *pr = p + r * a.ldp, *tr = tg + r * a.ldt;
    T *gr = g ? g + r * a.ldg : nullptr;
    V s = X::zero();
    for (int64_t j = 0; j < cols; j += W) {
      const int m = (int)imin(W, cols - j);
      const bool full = m == W;
      const V d = X::sub(full ? X::load(pr + j) : X::loadn(pr + j, m), full ? X::load(tr + j) : X::loadn(tr + j, m));
      s = X::fma(d, d, s);
      if (gr) {
        if (full) X::store(gr + j, X::mul(d, vin));
        else X::storen(gr + j, X::mul(d, vin), m);
      }
    }
    return (double)X::hsum(s);
  });
  return 0.5 * total * inv_n;
}

// mean over rows of logsumexp(p) - p[label], grad (softmax(p) - onehot)/n, one
// max pass + one exp pass (+ one for the gradient) over a row hot in L1.
template <class X>
double softmax_xent_loss(const LossArgs &a, int nthreads) {
  using T = typename X::T;
  using V = typename X::V;
  constexpr int W = X::W;
  const T *p = static_cast<const T *>(a.pred);
  const int32_t *lab = static_cast<const int32_t *>(a.target);
  T *g = static_cast<T *>(a.grad);
  const double inv_n = 1.0 / (double)a.rows;
  const int64_t cols = a.cols;
  const double total = sum_rows(a.rows, ew_threads(nthreads, a.rows * cols), [&](int64_t r) {
    const T *pr = p + r * a.ldp;
    V mv = X::set1(pr[0]);
    for (int64_t j = 0; j < cols; j += W) {
      const int m = (int)imin(W, cols - j);
      mv = X::max(mv, m == W ? X::load(pr + j) : X::loadn_fill(pr + j, m, pr[0]));
    }
    const T mx = X::hmax(mv);
    const V vm = X::set1(mx);
    V sv = X::zero();
    for (int64_t j = 0; j < cols; j += W) {
      const int m = (int)imin(W, cols - j);
      const V e = X::exp(X::sub(m == W ? X::load(pr + j) : X::loadn(pr + j, m), vm));
      sv = X::add(sv, m == W ? e : X::and_first(e, m));
    }
    const double s = (double)X::hsum(sv);
    const int32_t y = lab[r * a.ldt];
    if (g) {
      T *gr = g + r * a.ldg;
      const V sc = X::set1((T)(inv_n / s));
      for (int64_t j = 0; j < cols; j += W) {
        const int m = (int)imin(W, cols - j);
        const V q = X::mul(X::exp(X::sub(m == W ? X::load(pr + j) : X::loadn(pr + j, m), vm)), sc);
        if (m == W) X::store(gr + j, q);
        else X::storen(gr + j, q, m);
      }
      gr[y] = (T)((double)gr[y] - inv_n);
    }
    return ::log(s) - (double)(pr[y] - mx);
  });
  return total * inv_n;
}

// The extern entry points of one ISA TU, for traits F (float) and D (double).
