// fused_sgd_kernel.h -- body of the fused "dw = dy^T x, then SGD step" kernel,
// compiled once per ISA: each including TU defines LW_VEC_BYTES (16, 32, 64)
// and LW_ISA_SUFFIX, and is built with that ISA's flags. Everything here has
// internal linkage and uses no std:: inline templates, so no ISA-specific
// instruction can leak into code that runs on an older CPU (the linker may
// pick any TU's copy of an inline function).
//
// For a block of R = 4 rows of w and C = 2 vectors of columns, the kernel
// accumulates the (R, C) tile of dw over the batch in registers
//     dw[j, k] = sum_i dy[i, j] * x[i, k]        (dyT holds dy transposed: (out, n))
// and applies the SGD step (optimizer_math.h's sgd_rule) to that tile of w and
// its velocity right away.
#include <cstdint>

#include "../common/optimizer_math.h"

namespace lw::cpu {
namespace {

// The SGD formula of optimizer_math.h on one element; v may be null without momentum.
template <typename T>
inline void sgd_scalar(T g, T *w, T *v, const OptimizerCoefficients<T> &s) {
  T unused = 0;
  sgd_rule(*w, g, v ? *v : unused, s);
}

template <typename T>
struct VecOf {
  typedef T type __attribute__((vector_size(LW_VEC_BYTES)));
};

template <typename V, typename T>
inline V loadu(const T *p) {
  V v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}

template <typename V, typename T>
inline void storeu(T *p, V v) {
  __builtin_memcpy(p, &v, sizeof v);
}

// One vector of w (and its velocity) takes the step with gradient g.
template <typename V, typename T>
inline void sgd_vec(V g, T *w, T *v, const OptimizerCoefficients<T> &s) {
  V wv = loadu<V>(w);
  V vv = v ? loadu<V>(v) : V{};
  sgd_rule(wv, g, vv, s);
  storeu(w, wv);
  if (v) storeu(v, vv);
}

template <typename T>
void fused_rows(int64_t j0, int64_t j1, int64_t n, int64_t in, const T *dyT, const T *x, int64_t ldx,
                T *w, int64_t ldw, T *vel, const OptimizerCoefficients<T> &s) {
  typedef typename VecOf<T>::type V;
  constexpr int L = LW_VEC_BYTES / sizeof(T);
  constexpr int R = 4, C = 2 * L;
  int64_t j = j0;
  for (; j + R <= j1; j += R) {
    const T *d0 = dyT + (j + 0) * n, *d1 = dyT + (j + 1) * n;
    const T *d2 = dyT + (j + 2) * n, *d3 = dyT + (j + 3) * n;
    T *w0 = w + j * ldw;
    T *v0 = vel ? vel + j * ldw : nullptr;
    int64_t k = 0;
    for (; k + C <= in; k += C) {
      V a00 = {}, a01 = {}, a10 = {}, a11 = {}, a20 = {}, a21 = {}, a30 = {}, a31 = {};
      for (int64_t i = 0; i < n; ++i) {
        const T *xr = x + i * ldx + k;
        const V x0 = loadu<V>(xr), x1 = loadu<V>(xr + L);
        const V b0 = d0[i] + V{}, b1 = d1[i] + V{}, b2 = d2[i] + V{}, b3 = d3[i] + V{};
        a00 += b0 * x0; a01 += b0 * x1;
        a10 += b1 * x0; a11 += b1 * x1;
        a20 += b2 * x0; a21 += b2 * x1;
        a30 += b3 * x0; a31 += b3 * x1;
      }
      const V acc[R][2] = {{a00, a01}, {a10, a11}, {a20, a21}, {a30, a31}};
      for (int r = 0; r < R; ++r) {
        T *wr = w0 + r * ldw + k;
        T *vr = v0 ? v0 + r * ldw + k : nullptr;
        sgd_vec<V>(acc[r][0], wr, vr, s);
        sgd_vec<V>(acc[r][1], wr + L, vr ? vr + L : nullptr, s);
      }
    }
    for (; k + L <= in; k += L) {
      V a0 = {}, a1 = {}, a2 = {}, a3 = {};
      for (int64_t i = 0; i < n; ++i) {
        const V x0 = loadu<V>(x + i * ldx + k);
        a0 += (d0[i] + V{}) * x0;
        a1 += (d1[i] + V{}) * x0;
        a2 += (d2[i] + V{}) * x0;
        a3 += (d3[i] + V{}) * x0;
      }
      const V acc[R] = {a0, a1, a2, a3};
      for (int r = 0; r < R; ++r)
        sgd_vec<V>(acc[r], w0 + r * ldw + k, v0 ? v0 + r * ldw + k : nullptr, s);
    }
    for (; k < in; ++k) {
      for (int r = 0; r < R; ++r) {
        const T *dr = dyT + (j + r) * n;
        T g = 0;
        for (int64_t i = 0; i < n; ++i) g += dr[i] * x[i * ldx + k];
        sgd_scalar(g, w0 + r * ldw + k, v0 ? v0 + r * ldw + k : nullptr, s);
      }
    }
  }
  // Leftover rows (fewer than R): one row at a time, vectorized over columns.
  for (; j < j1; ++j) {
    const T *dr = dyT + j * n;
    T *wr = w + j * ldw;
    T *vr = vel ? vel + j * ldw : nullptr;
    int64_t k = 0;
    for (; k + L <= in; k += L) {
      V a = {};
      for (int64_t i = 0; i < n; ++i) a += (dr[i] + V{}) * loadu<V>(x + i * ldx + k);
      sgd_vec<V>(a, wr + k, vr ? vr + k : nullptr, s);
    }
    for (; k < in; ++k) {
      T g = 0;
      for (int64_t i = 0; i < n; ++i) g += dr[i] * x[i * ldx + k];
      sgd_scalar(g, wr + k, vr ? vr + k : nullptr, s);
    }
  }
}

}  // namespace

// The exported entry points of this ISA's TU (plain functions: no ODR sharing).
// s.use_momentum must equal vel != nullptr.
#define LW_CAT2(a, b) a##b
#define LW_CAT(a, b) LW_CAT2(a, b)
bool LW_CAT(fused_sgd_rows_f32_, LW_ISA_SUFFIX)(int64_t j0, int64_t j1, int64_t n, int64_t in,
                                                const float *dyT, const float *x, int64_t ldx, float *w,
                                                int64_t ldw, float *vel, const OptimizerCoefficients<float> &s) {
  fused_rows<float>(j0, j1, n, in, dyT, x, ldx, w, ldw, vel, s);
  return true;
}
bool LW_CAT(fused_sgd_rows_f64_, LW_ISA_SUFFIX)(int64_t j0, int64_t j1, int64_t n, int64_t in,
                                                const double *dyT, const double *x, int64_t ldx, double *w,
                                                int64_t ldw, double *vel, const OptimizerCoefficients<double> &s) {
  fused_rows<double>(j0, j1, n, in, dyT, x, ldx, w, ldw, vel, s);
  return true;
}
#undef LW_CAT
#undef LW_CAT2

}  // namespace lw::cpu
