// kernels_avx2.cpp -- AVX2+FMA instantiation of the vectorized kernels in
// simd_impl.h: float 6x16 and double 6x8 GEMM micro-tiles (12 accumulators of
// the 16 ymm registers), vectorized exp/sigmoid/tanh for float. Everything but
// the extern entry points is in an anonymous namespace (see simd_impl.h).
#if defined(__AVX2__) && defined(__FMA__)
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

struct F256 {
  using T = float;
  using V = __m256;
  static constexpr int W = 8, MR = kTileAvx2F32.mr, DM = 2, DN = 4;
  static_assert(2 * W == kTileAvx2F32.nr, "micro-tile is MR x 2W");
  static __m256i mk(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static V zero() { return _mm256_setzero_ps(); }
  static V set1(T x) { return _mm256_set1_ps(x); }
  static V load(const T *p) { return _mm256_loadu_ps(p); }
  static V loadn(const T *p, int n) { return _mm256_maskload_ps(p, mk(n)); }
  static V loadn_fill(const T *p, int n, T fill) {
    const __m256i m = mk(n);
    return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
  }
  static void store(T *p, V v) { _mm256_storeu_ps(p, v); }
  static void storen(T *p, V v, int n) { _mm256_maskstore_ps(p, mk(n), v); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V max(V a, V b) { return _mm256_max_ps(a, b); }
  static V and_first(V v, int n) { return _mm256_and_ps(v, _mm256_castsi256_ps(mk(n))); }
  static T hsum(V v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static T hmax(V v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  // As the AVX-512 exp (degree-7 Taylor on |r| <= 0.347, ~2 ulp). AVX2 has no
  // scalef, so 2^n is applied as 2^n1 * 2^n2 (n1 = n >> 1, n2 = n - n1, both
  // normal floats built in the exponent field for n in [-150, 128]): the first
  // product is exact and the second rounds once, which gives gradual underflow
  // to 0 and overflow to inf like scalef. x is clamped to [-104, 89] first.
  static V exp(V x) {
    x = _mm256_max_ps(_mm256_set1_ps(-104.0f), _mm256_min_ps(_mm256_set1_ps(89.0f), x));
    const V n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    V r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440054690583e-4f), r);
    V p = _mm256_set1_ps(1.0f / 5040);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i ni = _mm256_cvtps_epi32(n);
    const __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
    const __m256i bias = _mm256_set1_epi32(127);
    const V s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    const V s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    // NaN: cvtps_epi32 gives garbage, but p is NaN already and NaN * s stays NaN.
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
  }
  static V sigmoid(V x) {
    const V one = _mm256_set1_ps(1.0f);
    return _mm256_div_ps(one, _mm256_add_ps(one, exp(_mm256_sub_ps(_mm256_setzero_ps(), x))));
  }
  static V tanh(V x) {
    const V signbit = _mm256_castsi256_ps(_mm256_set1_epi32((int)0x80000000u));
    const V ax = _mm256_andnot_ps(signbit, x);
    const V sign = _mm256_and_ps(x, signbit);
    const V one = _mm256_set1_ps(1.0f);
    const V e = exp(_mm256_mul_ps(ax, _mm256_set1_ps(-2.0f)));
    const V big = _mm256_or_ps(_mm256_div_ps(_mm256_sub_ps(one, e), _mm256_add_ps(one, e)), sign);
    const V x2 = _mm256_mul_ps(x, x);
    V p = _mm256_set1_ps(62.0f / 2835);
    p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(-17.0f / 315));
    p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(2.0f / 15));
    p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(-1.0f / 3));
    const V small = _mm256_fmadd_ps(_mm256_mul_ps(p, x2), x, x);
    return _mm256_blendv_ps(big, small, _mm256_cmp_ps(ax, _mm256_set1_ps(0.25f), _CMP_LT_OQ));
  }
  static V relu(V x) { return _mm256_max_ps(_mm256_setzero_ps(), x); }
  static V thresh(V x) {
    return _mm256_and_ps(_mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GT_OQ), _mm256_set1_ps(1.0f));
  }
  static V select_gt0(V x, V v) {
    return _mm256_and_ps(_mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GT_OQ), v);
  }
  static void pack_bt(const T *src, int64_t ld, int64_t kc, T *dst);
  static void pack_a(const T *src, int64_t ld, int64_t kc, T *dst);
};

struct D256 {
  using T = double;
  using V = __m256d;
  static constexpr int W = 4, MR = kTileAvx2F64.mr, DM = 2, DN = 4;
  static_assert(2 * W == kTileAvx2F64.nr, "micro-tile is MR x 2W");
  static __m256i mk(int n) {
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
  }
  static V zero() { return _mm256_setzero_pd(); }
  static V set1(T x) { return _mm256_set1_pd(x); }
  static V load(const T *p) { return _mm256_loadu_pd(p); }
  static V loadn(const T *p, int n) { return _mm256_maskload_pd(p, mk(n)); }
  static V loadn_fill(const T *p, int n, T fill) {
    const __m256i m = mk(n);
    return _mm256_blendv_pd(_mm256_set1_pd(fill), _mm256_maskload_pd(p, m), _mm256_castsi256_pd(m));
  }
  static void store(T *p, V v) { _mm256_storeu_pd(p, v); }
  static void storen(T *p, V v, int n) { _mm256_maskstore_pd(p, mk(n), v); }
  static V add(V a, V b) { return _mm256_add_pd(a, b); }
  static V sub(V a, V b) { return _mm256_sub_pd(a, b); }
  static V mul(V a, V b) { return _mm256_mul_pd(a, b); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  static V max(V a, V b) { return _mm256_max_pd(a, b); }
  static V and_first(V v, int n) { return _mm256_and_pd(v, _mm256_castsi256_pd(mk(n))); }
  static T hsum(V v) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
  }
  static T hmax(V v) {
    __m128d s = _mm_max_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_max_sd(s, _mm_unpackhi_pd(s, s)));
  }
  // float64 transcendentals lane by lane through libm (see kernels_avx512.cpp).
  static double sig1(double v) { return 1.0 / (1.0 + ::exp(-v)); }
  static V lanes(V x, double (*f)(double)) {
    alignas(32) double t[4];
    _mm256_store_pd(t, x);
    for (int i = 0; i < 4; ++i) t[i] = f(t[i]);
    return _mm256_load_pd(t);
  }
  static V exp(V x) { return lanes(x, ::exp); }
  static V sigmoid(V x) { return lanes(x, sig1); }
  static V tanh(V x) { return lanes(x, ::tanh); }
  static V relu(V x) { return _mm256_max_pd(_mm256_setzero_pd(), x); }
  static V thresh(V x) {
    return _mm256_and_pd(_mm256_cmp_pd(x, _mm256_setzero_pd(), _CMP_GT_OQ), _mm256_set1_pd(1.0));
  }
  static V select_gt0(V x, V v) {
    return _mm256_and_pd(_mm256_cmp_pd(x, _mm256_setzero_pd(), _CMP_GT_OQ), v);
  }
  static void pack_bt(const T *src, int64_t ld, int64_t kc, T *dst);
  static void pack_a(const T *src, int64_t ld, int64_t kc, T *dst);
};

#define LW_SIMD_IMPL_INCLUDED_IN_ANON_NS
#include "simd_impl.h"

void F256::pack_bt(const T *src, int64_t ld, int64_t kc, T *dst) {
  pack_bt_scalar<F256>(src, ld, 16, kc, dst);
}
void D256::pack_bt(const T *src, int64_t ld, int64_t kc, T *dst) {
  pack_bt_scalar<D256>(src, ld, 8, kc, dst);
}
void F256::pack_a(const T *src, int64_t ld, int64_t kc, T *dst) { pack_a_scalar<F256>(src, ld, kc, dst); }
void D256::pack_a(const T *src, int64_t ld, int64_t kc, T *dst) { pack_a_scalar<D256>(src, ld, kc, dst); }

LW_DEFINE_ISA_ENTRIES(avx2, F256, D256)

}  // namespace
// The generator's 64-bit multiplies and its u64 -> double conversion have no
// AVX2 instructions (AVX-512DQ has both): sampling stays on the reference loop.
bool bernoulli_avx2(const BernoulliArgs &, int) { return false; }
}  // namespace lw::cpu
#endif
