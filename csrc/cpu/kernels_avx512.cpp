// kernels_avx512.cpp -- AVX-512 instantiation of the vectorized kernels in
// simd_impl.h: float 12x32 and double 12x16 GEMM micro-tiles, vectorized
// exp/sigmoid/tanh for float. Compiled with -mavx512*; everything except the
// extern entry points is in an anonymous namespace (see simd_impl.h).
#if defined(__AVX512F__) && defined(__AVX512DQ__)
// gcc 12 warns about _mm512_undefined_* inside the reduce intrinsics (a false positive).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "../common/backend.h"
#include "cpuinfo.h"
#include "kernels.h"
#include "threadpool.h"

namespace lw::cpu {
namespace {

struct F512 {
  using T = float;
  using V = __m512;
  static constexpr int W = 16, MR = kTileAvx512F32.mr, DM = 4, DN = 4;
  static_assert(2 * W == kTileAvx512F32.nr, "micro-tile is MR x 2W");
  static __mmask16 mk(int n) { return (__mmask16)((1u << n) - 1u); }
  static V zero() { return _mm512_setzero_ps(); }
  static V set1(T x) { return _mm512_set1_ps(x); }
  static V load(const T *p) { return _mm512_loadu_ps(p); }
  static V loadn(const T *p, int n) { return _mm512_maskz_loadu_ps(mk(n), p); }
  static V loadn_fill(const T *p, int n, T fill) {
    return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), mk(n), p);
  }
  static void store(T *p, V v) { _mm512_storeu_ps(p, v); }
  static void storen(T *p, V v, int n) { _mm512_mask_storeu_ps(p, mk(n), v); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V max(V a, V b) { return _mm512_max_ps(a, b); }
  static V and_first(V v, int n) { return _mm512_maskz_mov_ps(mk(n), v); }
  static T hsum(V v) { return _mm512_reduce_add_ps(v); }
  static T hmax(V v) { return _mm512_reduce_max_ps(v); }

  // exp(x) = 2^n e^r, n = round(x log2 e), r = x - n ln2 (Cody-Waite, |r| <= 0.347),
  // e^r by its degree-7 Taylor polynomial (truncation < 5e-9 relative). Measured
  // against float64: max error 2 ulp over [-87, 88]. scalef gives the exact 2^n
  // scaling incl. overflow to inf and gradual underflow; x is clamped first so a
  // huge |x| cannot leave r outside the polynomial's range. NaN propagates
  // (min/max return their second operand, x, when it is NaN).
  static V exp(V x) {
    x = _mm512_max_ps(_mm512_set1_ps(-104.0f), _mm512_min_ps(_mm512_set1_ps(89.0f), x));
    const V n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    V r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440054690583e-4f), r);
    V p = _mm512_set1_ps(1.0f / 5040);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
  }
  // 1 / (1 + e^-x): exp's 2 ulp plus two roundings, <= 3 ulp (tests: 1e-6 rel).
  static V sigmoid(V x) {
    const V one = _mm512_set1_ps(1.0f);
    return _mm512_div_ps(one, _mm512_add_ps(one, exp(_mm512_sub_ps(_mm512_setzero_ps(), x))));
  }
  // |x| < 0.25: odd Taylor series to x^9 (next term < 1e-8 relative);
  // otherwise sign(x) (1 - e)/(1 + e), e = exp(-2|x|), where 1 - e >= 0.39 keeps
  // the cancellation under 2 ulp. Max error ~4 ulp.
  static V tanh(V x) {
    const V ax = _mm512_abs_ps(x);
    const V sign = _mm512_and_ps(x, _mm512_castsi512_ps(_mm512_set1_epi32((int)0x80000000u)));
    const V one = _mm512_set1_ps(1.0f);
    const V e = exp(_mm512_mul_ps(ax, _mm512_set1_ps(-2.0f)));
    const V big = _mm512_or_ps(_mm512_div_ps(_mm512_sub_ps(one, e), _mm512_add_ps(one, e)), sign);
    const V x2 = _mm512_mul_ps(x, x);
    V p = _mm512_set1_ps(62.0f / 2835);
    p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(-17.0f / 315));
    p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(2.0f / 15));
    p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(-1.0f / 3));
    const V small = _mm512_fmadd_ps(_mm512_mul_ps(p, x2), x, x);
    const __mmask16 is_small = _mm512_cmp_ps_mask(ax, _mm512_set1_ps(0.25f), _CMP_LT_OQ);
    return _mm512_mask_mov_ps(big, is_small, small);
  }
  static V relu(V x) { return _mm512_max_ps(_mm512_setzero_ps(), x); }
  static V thresh(V x) {
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GT_OQ),
                               _mm512_set1_ps(1.0f));
  }
  static V select_gt0(V x, V v) {
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GT_OQ), v);
  }

  // In-register 16x16 transpose: 32-bit then 64-bit interleaves within 128-bit
  // lanes, then two rounds of 128-bit lane shuffles.
  static void transpose16(V *r) {
    V t[16], u[16];
    for (int j = 0; j < 8; ++j) {
      t[2 * j] = _mm512_unpacklo_ps(r[2 * j], r[2 * j + 1]);
      t[2 * j + 1] = _mm512_unpackhi_ps(r[2 * j], r[2 * j + 1]);
    }
    for (int j = 0; j < 4; ++j) {
      const __m512d a = _mm512_castps_pd(t[4 * j]), b = _mm512_castps_pd(t[4 * j + 2]);
      const __m512d c = _mm512_castps_pd(t[4 * j + 1]), d = _mm512_castps_pd(t[4 * j + 3]);
      u[4 * j + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
      u[4 * j + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
      u[4 * j + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
      u[4 * j + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
    }
    // u[4j + c], 128-bit lane L, holds column 4L + c of rows 4j..4j+3.
    for (int c = 0; c < 4; ++c) {
      const V w0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x44);
      const V w1 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xEE);
      const V w2 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x44);
      const V w3 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xEE);
      r[c] = _mm512_shuffle_f32x4(w0, w2, 0x88);
      r[4 + c] = _mm512_shuffle_f32x4(w0, w2, 0xDD);
      r[8 + c] = _mm512_shuffle_f32x4(w1, w3, 0x88);
      r[12 + c] = _mm512_shuffle_f32x4(w1, w3, 0xDD);
    }
  }
  // 12 rows of A (row stride ld), kc columns -> [k][12]: 16x16 transposes of
  // the 12 rows plus 4 zero rows, storing 12 lanes per k.
  static void pack_a(const T *src, int64_t ld, int64_t kc, T *dst) {
    int64_t k = 0;
    for (; k + 16 <= kc; k += 16) {
      V r[16];
      for (int i = 0; i < 12; ++i) r[i] = _mm512_loadu_ps(src + i * ld + k);
      for (int i = 12; i < 16; ++i) r[i] = _mm512_setzero_ps();
      transpose16(r);
      for (int c = 0; c < 16; ++c) _mm512_mask_storeu_ps(dst + (k + c) * 12, (__mmask16)0x0FFF, r[c]);
    }
    for (; k < kc; ++k)
      for (int i = 0; i < 12; ++i) dst[k * 12 + i] = src[i * ld + k];
  }
  // 32 rows of B (row stride ld), kc columns -> [k][32].
  static void pack_bt(const T *src, int64_t ld, int64_t kc, T *dst) {
    int64_t k = 0;
    for (; k + 16 <= kc; k += 16) {
      for (int h = 0; h < 2; ++h) {
        V r[16];
        for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + (h * 16 + i) * ld + k);
        transpose16(r);
        for (int c = 0; c < 16; ++c) _mm512_storeu_ps(dst + (k + c) * 32 + h * 16, r[c]);
      }
    }
    for (; k < kc; ++k)
      for (int j = 0; j < 32; ++j) dst[k * 32 + j] = src[j * ld + k];
  }
};

struct D512 {
  using T = double;
  using V = __m512d;
  static constexpr int W = 8, MR = kTileAvx512F64.mr, DM = 4, DN = 4;
  static_assert(2 * W == kTileAvx512F64.nr, "micro-tile is MR x 2W");
  static __mmask8 mk(int n) { return (__mmask8)((1u << n) - 1u); }
  static V zero() { return _mm512_setzero_pd(); }
  static V set1(T x) { return _mm512_set1_pd(x); }
  static V load(const T *p) { return _mm512_loadu_pd(p); }
  static V loadn(const T *p, int n) { return _mm512_maskz_loadu_pd(mk(n), p); }
  static V loadn_fill(const T *p, int n, T fill) {
    return _mm512_mask_loadu_pd(_mm512_set1_pd(fill), mk(n), p);
  }
  static void store(T *p, V v) { _mm512_storeu_pd(p, v); }
  static void storen(T *p, V v, int n) { _mm512_mask_storeu_pd(p, mk(n), v); }
  static V add(V a, V b) { return _mm512_add_pd(a, b); }
  static V sub(V a, V b) { return _mm512_sub_pd(a, b); }
  static V mul(V a, V b) { return _mm512_mul_pd(a, b); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  static V max(V a, V b) { return _mm512_max_pd(a, b); }
  static V and_first(V v, int n) { return _mm512_maskz_mov_pd(mk(n), v); }
  static T hsum(V v) { return _mm512_reduce_add_pd(v); }
  static T hmax(V v) { return _mm512_reduce_max_pd(v); }
  // float64 transcendentals go lane by lane through libm: exact to libm's
  // accuracy, and float64 is the correctness path, not the fast one.
  static double sig1(double v) { return 1.0 / (1.0 + ::exp(-v)); }
  static V lanes(V x, double (*f)(double)) {
    alignas(64) double t[8];
    _mm512_store_pd(t, x);
    for (int i = 0; i < 8; ++i) t[i] = f(t[i]);
    return _mm512_load_pd(t);
  }
  static V exp(V x) { return lanes(x, ::exp); }
  static V sigmoid(V x) { return lanes(x, sig1); }
  static V tanh(V x) { return lanes(x, ::tanh); }
  static V relu(V x) { return _mm512_max_pd(_mm512_setzero_pd(), x); }
  static V thresh(V x) {
    return _mm512_maskz_mov_pd(_mm512_cmp_pd_mask(x, _mm512_setzero_pd(), _CMP_GT_OQ),
                               _mm512_set1_pd(1.0));
  }
  static V select_gt0(V x, V v) {
    return _mm512_maskz_mov_pd(_mm512_cmp_pd_mask(x, _mm512_setzero_pd(), _CMP_GT_OQ), v);
  }
  static void pack_bt(const T *src, int64_t ld, int64_t kc, T *dst);
  static void pack_a(const T *src, int64_t ld, int64_t kc, T *dst);
};

#define LW_SIMD_IMPL_INCLUDED_IN_ANON_NS
#include "simd_impl.h"

void D512::pack_bt(const T *src, int64_t ld, int64_t kc, T *dst) {
  pack_bt_scalar<D512>(src, ld, 16, kc, dst);
}
void D512::pack_a(const T *src, int64_t ld, int64_t kc, T *dst) { pack_a_scalar<D512>(src, ld, kc, dst); }

// ---- Bernoulli sampling: rng.h's generator, 8 counters per vector -------------
// (AVX-512DQ has the 64-bit multiply the mixer needs.) The same bits and the same
// u < p comparison in double as the scalar definition, so draws are identical.
uint64_t mix64_s(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
__m512i mix64_v(__m512i z) {
  z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 30)),
                         _mm512_set1_epi64((long long)0xBF58476D1CE4E5B9ull));
  z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 27)),
                         _mm512_set1_epi64((long long)0x94D049BB133111EBull));
  return _mm512_xor_si512(z, _mm512_srli_epi64(z, 31));
}

template <class T>
void bernoulli_t(const BernoulliArgs &a, int nthreads) {
  const uint64_t golden = 0x9E3779B97F4A7C15ull;
  const uint64_t key = mix64_s(a.seed + golden);
  const __m512i vkey = _mm512_set1_epi64((long long)key), vg = _mm512_set1_epi64((long long)golden);
  const __m512i lane = _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7);
  const T *p = static_cast<const T *>(a.p);
  T *y = static_cast<T *>(a.y);
  const __m512d ps = _mm512_set1_pd(a.p_scalar), scale = _mm512_set1_pd(0x1.0p-53);
  const int64_t cols = a.cols, ldp = a.ldp, ldy = a.ldy;
  const uint64_t offset = a.offset;
  for_segments(a.rows, cols, threads_for(a.rows * cols, grain::kSample, nthreads), [&](int64_t r, int64_t c0, int64_t c1) {
    const uint64_t base = offset + (uint64_t)r * (uint64_t)cols;
    for (int64_t j = c0; j < c1; j += 8) {
      const int m = (int)imin(8, c1 - j);
      const __mmask8 mk = (__mmask8)((1u << m) - 1u);
      const __m512i ctr = _mm512_add_epi64(_mm512_set1_epi64((long long)(base + (uint64_t)j)), lane);
      const __m512i bits = mix64_v(_mm512_xor_si512(vkey, mix64_v(_mm512_add_epi64(_mm512_mullo_epi64(ctr, vg), vkey))));
      const __m512d u = _mm512_mul_pd(_mm512_cvtepu64_pd(_mm512_srli_epi64(bits, 11)), scale);
      __m512d pv = ps;
      if (p) {
        if (sizeof(T) == 4) pv = _mm512_cvtps_pd(_mm256_maskz_loadu_ps(mk, reinterpret_cast<const float *>(p) + r * ldp + j));
        else pv = _mm512_maskz_loadu_pd(mk, reinterpret_cast<const double *>(p) + r * ldp + j);
      }
      const __mmask8 hit = _mm512_cmp_pd_mask(u, pv, _CMP_LT_OQ);
      if (sizeof(T) == 4)
        _mm256_mask_storeu_ps(reinterpret_cast<float *>(y) + r * ldy + j, mk,
                              _mm256_maskz_mov_ps(hit, _mm256_set1_ps(1.0f)));
      else
        _mm512_mask_storeu_pd(reinterpret_cast<double *>(y) + r * ldy + j, mk,
                              _mm512_maskz_mov_pd(hit, _mm512_set1_pd(1.0)));
    }
  });
}

LW_DEFINE_ISA_ENTRIES(avx512, F512, D512)

}  // namespace
bool bernoulli_avx512(const BernoulliArgs &a, int nthreads) {
  if (a.dtype == DType::F32) bernoulli_t<float>(a, nthreads);
  else bernoulli_t<double>(a, nthreads);
  return true;
}
namespace {

}  // namespace
}  // namespace lw::cpu
#endif
