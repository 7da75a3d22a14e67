// simd/activation.h -- activations forward and backward (lwActivationMode_t),
// vectorized; act_v is also the GEMM epilogue's activation. Part of simd_impl.h.
#ifndef LW_SIMD_IMPL_INCLUDED_IN_ANON_NS
#error "include through simd_impl.h, inside an anonymous namespace of an ISA TU"
#endif

template <class X>
inline typename X::V act_v(int mode, typename X::V v) {
  switch (mode) {
    case LW_ACTIVATION_SIGMOID: return X::sigmoid(v);
    case LW_ACTIVATION_TANH: return X::tanh(v);
    case LW_ACTIVATION_RELU: return X::relu(v);
    case LW_ACTIVATION_THRESHOLD: return X::thresh(v);
    default: return v;
  }
}

// y = alpha * act(x) + beta * y over [c0, c1) of one row.
template <class X>
inline void act_fwd_row(int mode, const typename X::T *x, typename X::T *y, int64_t n,
                        typename X::T alpha, typename X::T beta) {
  constexpr int W = X::W;
  const auto va = X::set1(alpha), vb = X::set1(beta);
  int64_t j = 0;
  for (; j + W <= n; j += W) {
    auto v = X::mul(va, act_v<X>(mode, X::load(x + j)));
    if (beta != 0) v = X::fma(vb, X::load(y + j), v);
    X::store(y + j, v);
  }
  if (j < n) {
    const int r = (int)(n - j);
    auto v = X::mul(va, act_v<X>(mode, X::loadn(x + j, r)));
    if (beta != 0) v = X::fma(vb, X::loadn(y + j, r), v);
    X::storen(y + j, v, r);
  }
}

template <class X>
void act_forward(const ActivationForwardArgs &a, int nthreads) {
  using T = typename X::T;
  const T *x = static_cast<const T *>(a.x);
  T *y = static_cast<T *>(a.y);
  const T alpha = (T)a.alpha, beta = (T)a.beta;
  const int mode = a.mode;
  const int64_t ldx = a.ldx, ldy = a.ldy;
  const bool flat = ldx == a.cols && ldy == a.cols;
  const int64_t rows = flat ? 1 : a.rows, cols = flat ? a.rows * a.cols : a.cols;
  for_segments(rows, cols, ew_threads(nthreads, a.rows * a.cols), [&](int64_t r, int64_t c0, int64_t c1) {
    act_fwd_row<X>(mode, x + r * ldx + c0, y + r * ldy + c0, c1 - c0, alpha, beta);
  });
}

// dx = alpha * act'(.) dy + beta * dx, the same formulas as activate_grad().
template <class X>
inline typename X::V act_grad_v(int mode, typename X::V y, typename X::V x, typename X::V dy) {
  const auto one = X::set1(typename X::T(1));
  switch (mode) {
    case LW_ACTIVATION_SIGMOID: return X::mul(X::mul(dy, y), X::sub(one, y));
    case LW_ACTIVATION_TANH: return X::mul(dy, X::sub(one, X::mul(y, y)));
    case LW_ACTIVATION_RELU: return X::select_gt0(x, dy);
    case LW_ACTIVATION_THRESHOLD: return X::zero();
    default: return dy;
  }
}

template <class X>
void act_backward(const ActivationBackwardArgs &a, int nthreads) {
  using T = typename X::T;
  constexpr int W = X::W;
  const T *y = static_cast<const T *>(a.y), *dy = static_cast<const T *>(a.dy);
  const T *x = static_cast<const T *>(a.x);
  T *dx = static_cast<T *>(a.dx);
  // RELU decides on x when given, else on y (y > 0 iff x > 0).
  const T *xs = x ? x : y;
  const int64_t ldxs = x ? a.ldx : a.ldy;
  const T alpha = (T)a.alpha, beta = (T)a.beta;
  const int mode = a.mode;
  const bool flat = a.ldy == a.cols && a.lddy == a.cols && a.lddx == a.cols && ldxs == a.cols;
  const int64_t rows = flat ? 1 : a.rows, cols = flat ? a.rows * a.cols : a.cols;
  const int64_t ldy = a.ldy, lddy = a.lddy, lddx = a.lddx;
  const bool need_x = mode == LW_ACTIVATION_RELU;
  for_segments(rows, cols, ew_threads(nthreads, a.rows * a.cols), [&](int64_t r, int64_t c0, int64_t c1) {
    const T *yr = y + r * ldy + c0, *dyr = dy + r * lddy + c0, *xr = xs + r * ldxs + c0;
    T *dxr = dx + r * lddx + c0;
    const int64_t n = c1 - c0;
    const auto va = X::set1(alpha), vb = X::set1(beta);
    for (int64_t j = 0; j < n; j += W) {
      const int m = (int)imin(W, n - j);
      const bool full = m == W;
      const auto vy = full ? X::load(yr + j) : X::loadn(yr + j, m);
      const auto vdy = full ? X::load(dyr + j) : X::loadn(dyr + j, m);
      const auto vx = need_x ? (full ? X::load(xr + j) : X::loadn(xr + j, m)) : vy;
      auto v = X::mul(va, act_grad_v<X>(mode, vy, vx, vdy));
      if (beta != 0) v = X::fma(vb, full ? X::load(dxr + j) : X::loadn(dxr + j, m), v);
      if (full) X::store(dxr + j, v);
      else X::storen(dxr + j, v, m);
    }
  });
}
