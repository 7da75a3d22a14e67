// simd/optimizer.h -- the vector body of every optimizer mode, compiled once per
// ISA: the including TU defines LW_VEC_BYTES (32 or 64), is built with that
// ISA's flags, and includes this inside an anonymous namespace after
// <immintrin.h>, optimizer_math.h and optimizer_segments.h. Vectors are GCC
// vector types, whose operators broadcast scalars, so the formulas of
// optimizer_math.h apply to them unchanged; the tail of each run (fewer than
// one vector) takes the same formulas on scalars.
#ifndef LW_VEC_BYTES
#error "define LW_VEC_BYTES before including simd/optimizer.h"
#endif

template <typename T>
struct OptVec {
  typedef T type __attribute__((vector_size(LW_VEC_BYTES)));
};

template <typename V, typename T>
inline V opt_load(const T *p) {
  V v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}

template <typename V, typename T>
inline void opt_store(T *p, V v) {
  __builtin_memcpy(p, &v, sizeof v);
}

// Lane-wise square root of a vector, with the ISA's instruction.
struct VectorSqrt {
  typedef OptVec<float>::type VF;
  typedef OptVec<double>::type VD;
#if LW_VEC_BYTES == 64
  VF operator()(VF x) const { return (VF)_mm512_sqrt_ps((__m512)x); }
  VD operator()(VD x) const { return (VD)_mm512_sqrt_pd((__m512d)x); }
#elif LW_VEC_BYTES == 32
  VF operator()(VF x) const { return (VF)_mm256_sqrt_ps((__m256)x); }
  VD operator()(VD x) const { return (VD)_mm256_sqrt_pd((__m256d)x); }
#else
#error "LW_VEC_BYTES must be 32 or 64"
#endif
};

template <lwOptimizerMode_t Mode, typename T>
void vector_span(const OptimizerStepArgs &a, const OptimizerCoefficients<T> &c, int64_t off, int64_t n) {
  typedef typename OptVec<T>::type V;
  constexpr int L = LW_VEC_BYTES / (int)sizeof(T);
  T *p = static_cast<T *>(a.param) + off;
  const T *g = static_cast<const T *>(a.grad) + off;
  const int count = a.state_count;
  T *st[3] = {nullptr, nullptr, nullptr};
  for (int k = 0; k < count; ++k) st[k] = static_cast<T *>(a.state[k]) + off;
  int64_t j = 0;
  for (; j + L <= n; j += L) {
    V s[3] = {};
    for (int k = 0; k < count; ++k) s[k] = opt_load<V>(st[k] + j);
    V pv = opt_load<V>(p + j);
    optimizer_rule<Mode>(pv, opt_load<V>(g + j), s, c, VectorSqrt{});
    opt_store(p + j, pv);
    for (int k = 0; k < count; ++k) opt_store(st[k] + j, s[k]);
  }
  for (; j < n; ++j) {
    T s[3] = {0, 0, 0};
    for (int k = 0; k < count; ++k) s[k] = st[k][j];
    T pj = p[j];
    optimizer_rule<Mode>(pj, g[j], s, c, ScalarSqrt{});
    p[j] = pj;
    for (int k = 0; k < count; ++k) st[k][j] = s[k];
  }
}

template <typename T>
void vector_optimizer_step(const OptimizerStepArgs &a, int nthreads) {
  const OptimizerCoefficients<T> c = cast_coefficients<T>(a.coef);
  for_optimizer_segments(a, nthreads, [&](int64_t off, int64_t n) {
    switch (a.mode) {
      case LW_OPTIMIZER_SGD: vector_span<LW_OPTIMIZER_SGD>(a, c, off, n); break;
      case LW_OPTIMIZER_ADAM: vector_span<LW_OPTIMIZER_ADAM>(a, c, off, n); break;
      case LW_OPTIMIZER_ADAMW: vector_span<LW_OPTIMIZER_ADAMW>(a, c, off, n); break;
      case LW_OPTIMIZER_RMSPROP: vector_span<LW_OPTIMIZER_RMSPROP>(a, c, off, n); break;
      case LW_OPTIMIZER_ADAGRAD: vector_span<LW_OPTIMIZER_ADAGRAD>(a, c, off, n); break;
    }
  });
}
