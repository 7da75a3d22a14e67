// simd/gemm/pack.h -- packing of op(A) and op(B) into micro-panels. Part of simd_impl.h.
#ifndef LW_SIMD_IMPL_INCLUDED_IN_ANON_NS
#error "include through simd_impl.h, inside an anonymous namespace of an ISA TU"
#endif

// ---- packing -------------------------------------------------------------------
// Packed A: panels of MR rows, [k][MR] per panel, rows past the edge zeroed.
// Packed B: panels of NR = 2W columns, [k][NR]. The transposes of op() are
// absorbed here, so the micro-kernel only ever sees these two layouts.
// rsum (mc), when given, accumulates the row sums of op(A) over this k block:
// the dense layer's db = sum over the batch of dy, taken while dy is packed.
template <class X>
void pack_a(bool ta, const typename X::T *A, int64_t lda, int64_t i0, int64_t p0, int64_t mc,
            int64_t kc, typename X::T *dst, double *rsum) {
  using T = typename X::T;
  constexpr int MR = X::MR;
  for (int64_t ir = 0; ir < mc; ir += MR, dst += MR * kc) {
    const int mr = (int)imin(MR, mc - ir);
    if (!ta && mr == MR) {
      X::pack_a(A + (i0 + ir) * lda + p0, lda, kc, dst);
    } else if (!ta) {
      for (int i = 0; i < mr; ++i) {
        const T *src = A + (i0 + ir + i) * lda + p0;  // (kc)
        for (int64_t k = 0; k < kc; ++k) dst[k * MR + i] = src[k];
      }
      for (int i = mr; i < MR; ++i)
        for (int64_t k = 0; k < kc; ++k) dst[k * MR + i] = T(0);
    } else {
      double acc[MR] = {};
      for (int64_t k = 0; k < kc; ++k) {
        const T *src = A + (p0 + k) * lda + i0 + ir;  // (mr)
        T *d = dst + k * MR;
        int i = 0;
        if (rsum)
          for (; i < mr; ++i) acc[i] += (double)(d[i] = src[i]);
        else
          for (; i < mr; ++i) d[i] = src[i];
        for (; i < MR; ++i) d[i] = T(0);
      }
      if (rsum)
        for (int i = 0; i < mr; ++i) rsum[ir + i] += acc[i];
    }
  }
}

// A full MR-row panel of untransposed A (rows at stride lda) -> [k][MR].
template <class X>
void pack_a_scalar(const typename X::T *A, int64_t lda, int64_t kc, typename X::T *dst) {
  for (int i = 0; i < X::MR; ++i)
    for (int64_t k = 0; k < kc; ++k) dst[k * X::MR + i] = A[i * lda + k];
}

template <class X>
void pack_bt_scalar(const typename X::T *B, int64_t ldb, int nr, int64_t kc, typename X::T *dst) {
  constexpr int NR = 2 * X::W;
  for (int j = 0; j < nr; ++j) {
    const typename X::T *src = B + j * ldb;
    for (int64_t k = 0; k < kc; ++k) dst[k * NR + j] = src[k];
  }
  for (int j = nr; j < NR; ++j)
    for (int64_t k = 0; k < kc; ++k) dst[k * NR + j] = typename X::T(0);
}

template <class X>
void pack_b(bool tb, const typename X::T *B, int64_t ldb, int64_t p0, int64_t j0, int64_t kc,
            int64_t nc, typename X::T *dst) {
  constexpr int W = X::W, NR = 2 * W;
  for (int64_t jr = 0; jr < nc; jr += NR, dst += NR * kc) {
    const int nr = (int)imin(NR, nc - jr);
    if (!tb) {
      const int n0 = nr < W ? nr : W, n1 = nr > W ? nr - W : 0;
      for (int64_t k = 0; k < kc; ++k) {
        const typename X::T *src = B + (p0 + k) * ldb + j0 + jr;  // (nr)
        if (nr == NR) {
          X::store(dst + k * NR, X::load(src));
          X::store(dst + k * NR + W, X::load(src + W));
        } else {
          X::store(dst + k * NR, X::loadn(src, n0));
          X::store(dst + k * NR + W, X::loadn(src + W, n1));
        }
      }
    } else {
      const typename X::T *src = B + (j0 + jr) * ldb + p0;  // (nr, kc) rows of B
      if (nr == NR) X::pack_bt(src, ldb, kc, dst);
      else pack_bt_scalar<X>(src, ldb, nr, kc, dst);
    }
  }
}
