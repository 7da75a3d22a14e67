// simd_impl.h -- the vectorized CPU kernels (packed GEMM, small-batch GEMM paths,
// elementwise passes), written once against a vector "traits" type X and
// instantiated by each ISA translation unit (kernels_avx512.cpp, kernels_avx2.cpp).
//
// Include ONLY from an ISA TU, inside an anonymous namespace, after defining the
// traits: every function here is then local to that TU, so the linker can never
// pick an AVX-512 copy for generic code (the ODR trap). For the same reason this
// file uses no std:: templates (no std::min, std::vector, <algorithm>).
//
// Traits X provide: T (float/double), V (vector), W (lanes), MR (micro-tile rows),
// KC/MC (cache blocks), DM/DN (dot-product tile), zero/set1/load/loadn/store/storen (n-lane masked),
// add/sub/mul/fma/max, hsum/hmax, exp/sigmoid/tanh/relu/thresh/select_gt0, and
// pack_a / pack_bt (a full MR-row A panel, a full NR-row transposed B panel; may
// fall back to pack_a_scalar / pack_bt_scalar).

#ifndef LW_SIMD_IMPL_INCLUDED_IN_ANON_NS
#error "include simd_impl.h inside an anonymous namespace of an ISA TU"
#endif

inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }
inline int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// f(t, n) on n pool threads (threadpool.h); the captureless trampoline keeps
// the pool interface a plain function pointer.
template <class F>
void run_parallel(int nt, const F &f) {
  if (nt <= 1) {
    f(0, 1);
    return;
  }
  parallel_run(
      nt, [](void *c, int t, int n) { (*static_cast<const F *>(c))(t, n); },
      const_cast<F *>(&f));
}

// Work items [0, count) claimed `chunk` at a time by whichever thread is free,
// so a thread the OS delays (shared machine) does not hold up the others.
// body(i, t) also gets the pool thread t in [0, nt) running it (per-thread buffers).
template <class F>
void parallel_chunks_t(int nt, int64_t count, int64_t chunk, const F &body) {
  int64_t next = 0;
  run_parallel(nt, [&](int t, int) {
    for (;;) {
      const int64_t b = __atomic_fetch_add(&next, chunk, __ATOMIC_RELAXED);
      if (b >= count) break;
      const int64_t e = b + chunk < count ? b + chunk : count;
      for (int64_t i = b; i < e; ++i) body(i, t);
    }
  });
}
template <class F>
void parallel_chunks(int nt, int64_t count, int64_t chunk, const F &body) {
  parallel_chunks_t(nt, count, chunk, [&](int64_t i, int) { body(i); });
}

// Per-thread scratch that survives between calls, so packing buffers cost no
// page faults after the first call. get() returns nullptr when the allocation
// fails (and forgets the old buffer); callers check before any work starts.
struct Scratch {
  void *p = nullptr;
  size_t n = 0;
  ~Scratch() { std::free(p); }
  void *get(size_t bytes) {
    if (bytes > n) {
      std::free(p);
      const size_t want = (bytes + 4095) & ~(size_t)4095;
      p = std::aligned_alloc(64, want);
      n = p ? want : 0;
    }
    return p;
  }
};

template <class T>
struct Ep {
  T alpha, beta;
  int act;
};

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

// ---- packed GEMM ---------------------------------------------------------------------
// Phase 1 packs all of op(A) once into a buffer shared by the threads: per K
// block pc (KC deep), MR-row panels [k][MR]. Phase 2 cuts C into tasks of MT
// rows x NCH columns claimed dynamically; a task packs its B block (KC x NCH,
// L2) per pc and runs the GotoBLAS inner loops over it: ic (MC rows of packed
// A, L2) -> jr (NR, B micro-panel in L1) -> ir (MR). Dynamic tasks keep both
// cores busy when one of them is shared with another process, and scale past 2.
// Both live on the calling thread: pool threads get slices of tl_bpack.
thread_local Scratch tl_apack, tl_bpack;

inline int64_t round_up(int64_t a, int64_t b) { return cdiv(a, b) * b; }

// Threads for a product of 2*M*N*K flops: about one per 2 MFLOP, so small
// layers do not pay a fork/join they cannot amortize.
inline int gemm_threads(int64_t M, int64_t N, int64_t K, int nthreads) {
  const double flops = 2.0 * (double)M * (double)N * (double)K;
  const int64_t t = (int64_t)(flops / 2e6);
  return (int)imax(1, imin(nthreads, t));
}

// Returns false, before touching C, when a packing buffer cannot be allocated.
template <class X>
bool gemm_packed(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const typename X::T *A,
                 int64_t lda, const typename X::T *B, int64_t ldb, typename X::T *C, int64_t ldc,
                 const typename X::T *bias, const Ep<typename X::T> &ep, int nthreads,
                 double *rsum = nullptr) {
  using T = typename X::T;
  constexpr int MR = X::MR, NR = 2 * X::W;
  const int64_t nk = cdiv(K, X::KC);
  const int64_t kcb = round_up(cdiv(K, nk), 8);
  const int64_t mpan = cdiv(M, MR), Mp = mpan * MR;
  int nt = gemm_threads(M, N, K, nthreads);

  // Phase 2's task shape: MT x NCH, at least ~3 tasks per thread when the shape allows.
  int64_t NCH = imin(round_up(N, NR), 256), MT = imin(Mp, 8 * X::MC);
  while (cdiv(M, MT) * cdiv(N, NCH) < 3 * nt && NCH > 2 * NR) NCH = round_up(NCH / 2, NR);
  while (cdiv(M, MT) * cdiv(N, NCH) < 3 * nt && MT > X::MC) MT = round_up(MT / 2, MR);
  const int64_t mtasks = cdiv(M, MT), tasks = mtasks * cdiv(N, NCH);
  const int nt2 = (int)imin(nt, tasks);

  // Every buffer is allocated here, on the calling thread, so a failure leaves C untouched.
  const int64_t bstride = round_up(round_up(NCH, NR) * kcb, 16);  // one B block per thread
  T *apack = static_cast<T *>(tl_apack.get(sizeof(T) * Mp * K));
  T *bpack = static_cast<T *>(tl_bpack.get(sizeof(T) * bstride * nt2));
  if (!apack || !bpack) return false;

  // Phase 1: op(A) -> apack; block pc at apack + Mp * pc, panel ip at + ip * MR * kc.
  parallel_chunks((int)imin(nt, mpan), mpan, imax(1, mpan / (4 * nt)), [&](int64_t ip) {
    const int64_t i0 = ip * MR;
    for (int64_t pc = 0; pc < K; pc += kcb) {
      const int64_t kc = imin(kcb, K - pc);
      pack_a<X>(ta, A, lda, i0, pc, imin(MR, M - i0), kc, apack + Mp * pc + ip * MR * kc,
                rsum ? rsum + i0 : nullptr);
    }
  });

  // Phase 2: the MT x NCH tasks; each thread packs B blocks into its own slice.
  parallel_chunks_t(nt2, tasks, 1, [&](int64_t t, int tid) {
    const int64_t i0 = t % mtasks * MT, j0 = t / mtasks * NCH;
    const int64_t i1 = imin(M, i0 + MT), nch = imin(NCH, N - j0);
    T *bbuf = bpack + bstride * tid;
    for (int64_t pc = 0; pc < K; pc += kcb) {
      const int64_t kc = imin(kcb, K - pc);
      const bool first = pc == 0, last = pc + kc == K;
      pack_b<X>(tb, B, ldb, pc, j0, kc, nch, bbuf);
      const T *ablock = apack + Mp * pc;
      for (int64_t ic = i0; ic < i1; ic += X::MC) {
        const int64_t ie = imin(i1, ic + X::MC);
        for (int64_t jr = 0; jr < nch; jr += NR) {
          const int nr = (int)imin(NR, nch - jr);
          const T *bp = bbuf + jr * kc;
          const T *bi = bias ? bias + j0 + jr : nullptr;
          for (int64_t ir = ic; ir < ie; ir += MR)
            micro<X, MR, true, false>(kc, ablock + ir * kc, 0, 0, bp, NR, (int)imin(MR, M - ir), nr,
                                      C + ir * ldc + j0 + jr, ldc, bi, ep, first, last);
        }
      }
    }
  });
  return true;
}

// ---- unpacked paths for small batches ----------------------------------------------
// op(B) = B row-major (no transpose): stream B straight from memory, whole K per
// tile; A read in place through strides. Used for dy w (n small) and dy^T x
// (n = K small), where packing would move more bytes than the product does.
template <class X, int MRr>
inline void direct_tile(int64_t K, const typename X::T *a, int64_t a_rs, int64_t a_ks,
                        const typename X::T *b, int64_t ldb, int mr, int nr, typename X::T *c,
                        int64_t ldc, const typename X::T *bias, const Ep<typename X::T> &ep) {
  if (nr == 2 * X::W)
    micro<X, MRr, false, false>(K, a, a_rs, a_ks, b, ldb, mr, nr, c, ldc, bias, ep, true, true);
  else
    micro<X, MRr, false, true>(K, a, a_rs, a_ks, b, ldb, mr, nr, c, ldc, bias, ep, true, true);
}

template <class X, int MRr>
inline void direct_tile_rows(int mr, int64_t K, const typename X::T *a, int64_t a_rs,
                             int64_t a_ks, const typename X::T *b, int64_t ldb, int nr,
                             typename X::T *c, int64_t ldc, const typename X::T *bias,
                             const Ep<typename X::T> &ep) {
  if constexpr (MRr > 1) {
    if (mr < MRr) {
      direct_tile_rows<X, MRr - 1>(mr, K, a, a_rs, a_ks, b, ldb, nr, c, ldc, bias, ep);
      return;
    }
  }
  direct_tile<X, MRr>(K, a, a_rs, a_ks, b, ldb, mr, nr, c, ldc, bias, ep);
}

template <class X>
void gemm_direct(bool ta, int64_t M, int64_t N, int64_t K, const typename X::T *A, int64_t lda,
                 const typename X::T *B, int64_t ldb, typename X::T *C, int64_t ldc,
                 const typename X::T *bias, const Ep<typename X::T> &ep, int nthreads) {
  constexpr int MR = X::MR, NR = 2 * X::W;
  const int64_t a_rs = ta ? 1 : lda, a_ks = ta ? lda : 1;
  const int64_t mt = cdiv(M, MR), ntl = cdiv(N, NR), tiles = mt * ntl;
  // A second thread costs a wake-up (tens of us on an idle VM core): only past
  // ~4 MFLOP per thread, so a batch-1 GEMV stays on the calling thread.
  const int nt = (int)imax(1, imin(imin(nthreads, tiles), 2 * M * N * K / 4000000));
  // Tiles are ordered column-block major so consecutive tiles reuse one B strip.
  // Few rows of C: column-block major, so each thread streams its own slice of B.
  // Small K (B and A tiny): row major, so C is written row by row.
  const bool rows_first = K <= 48 && mt > 1;
  parallel_chunks(nt, tiles, imax(1, tiles / (8 * nt)), [&](int64_t t) {
    const int64_t jt = rows_first ? t % ntl : t / mt, it = rows_first ? t / ntl : t % mt;
    const int64_t i0 = it * MR, j0 = jt * NR;
    const int mr = (int)imin(MR, M - i0), nr = (int)imin(NR, N - j0);
    direct_tile_rows<X, MR>(mr, K, A + i0 * a_rs, a_rs, a_ks, B + j0, ldb, nr, C + i0 * ldc + j0,
                            ldc, bias ? bias + j0 : nullptr, ep);
  });
}

// op(A) = A, op(B) = B^T with both K-contiguous (the forward x w^T) and few rows
// on one side: dot products over K, DM x DN of them at once, no packing at all.
template <class X, int DM, int DN>
void gemm_dot(int64_t M, int64_t N, int64_t K, const typename X::T *A, int64_t lda,
              const typename X::T *B, int64_t ldb, typename X::T *C, int64_t ldc,
              const typename X::T *bias, const Ep<typename X::T> &ep, int nthreads) {
  using T = typename X::T;
  using V = typename X::V;
  constexpr int W = X::W;
  static_assert(DN <= W, "one vector of results per row");
  const int64_t mt = cdiv(M, DM), ntl = cdiv(N, DN), tiles = mt * ntl;
  const int nt = (int)imax(1, imin(imin(nthreads, tiles), 2 * M * N * K / 4000000));  // see gemm_direct
  const int64_t kv = K / W * W;
  const int kt = (int)(K - kv);
  // Tiles ordered B-block major: each thread streams a contiguous slice of B (w).
  parallel_chunks(nt, tiles, imax(1, tiles / (8 * nt)), [&](int64_t t) {
    const int64_t jt = t / mt, it = t % mt;
    const int64_t i0 = it * DM, j0 = jt * DN;
    const int mr = (int)imin(DM, M - i0), nr = (int)imin(DN, N - j0);
    const T *ap[DM];
    const T *bp[DN];
    for (int i = 0; i < DM; ++i) ap[i] = A + imin(i0 + i, M - 1) * lda;
    for (int j = 0; j < DN; ++j) bp[j] = B + imin(j0 + j, N - 1) * ldb;
    V acc[DM][DN];
#pragma GCC unroll 16
    for (int i = 0; i < DM; ++i)
#pragma GCC unroll 16
      for (int j = 0; j < DN; ++j) acc[i][j] = X::zero();
    for (int64_t k = 0; k < kv; k += W) {
      V av[DM], bv[DN];
#pragma GCC unroll 16
      for (int i = 0; i < DM; ++i) av[i] = X::load(ap[i] + k);
#pragma GCC unroll 16
      for (int j = 0; j < DN; ++j) bv[j] = X::load(bp[j] + k);
#pragma GCC unroll 16
      for (int i = 0; i < DM; ++i)
#pragma GCC unroll 16
        for (int j = 0; j < DN; ++j) acc[i][j] = X::fma(av[i], bv[j], acc[i][j]);
    }
    if (kt) {
      V av[DM], bv[DN];
      for (int i = 0; i < DM; ++i) av[i] = X::loadn(ap[i] + kv, kt);
      for (int j = 0; j < DN; ++j) bv[j] = X::loadn(bp[j] + kv, kt);
      for (int i = 0; i < DM; ++i)
        for (int j = 0; j < DN; ++j) acc[i][j] = X::fma(av[i], bv[j], acc[i][j]);
    }
    for (int i = 0; i < mr; ++i) {
      alignas(64) T row[W];
      for (int j = 0; j < DN; ++j) row[j] = X::hsum(acc[i][j]);
      epi<X>(C + (i0 + i) * ldc + j0, X::loadn(row, nr), nr, bias ? bias + j0 : nullptr, ep, true,
             true);
    }
  });
}

// C = alpha * S + beta * C after S was computed (in place of C's scratch copy).
template <class X>
void blend_into(int64_t M, int64_t N, const typename X::T *S, typename X::T *C, int64_t ldc,
                typename X::T alpha, typename X::T beta) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = alpha * S[i * N + j] + beta * C[i * ldc + j];
}

// Entry point. trans_a && trans_b is not used by the dense layers and returns
// false so the caller falls back to the reference.
template <class X>
bool gemm_entry(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const typename X::T *A,
                int64_t lda, const typename X::T *B, int64_t ldb, typename X::T *C, int64_t ldc,
                double alpha, double beta, const typename X::T *bias, int act, int nthreads,
                typename X::T *rowsum, bool *rowsum_done) {
  using T = typename X::T;
  *rowsum_done = false;
  if (ta && tb) return false;
  if (M <= 0 || N <= 0) return true;
  if (K <= 0) return false;
  Ep<T> ep{(T)alpha, (T)beta, act};
  if (!ta && tb && (M <= 32 || N <= 16)) {
    // One or two rows of x: all DM x DN accumulators on distinct rows of w.
    if (M == 1) gemm_dot<X, 1, (2 * X::DN <= X::W ? 2 * X::DN : X::W)>(M, N, K, A, lda, B, ldb, C, ldc, bias, ep, nthreads);
    else if (M == 2) gemm_dot<X, 2, (2 * X::DN <= X::W ? 2 * X::DN : X::W)>(M, N, K, A, lda, B, ldb, C, ldc, bias, ep, nthreads);
    else gemm_dot<X, X::DM, X::DN>(M, N, K, A, lda, B, ldb, C, ldc, bias, ep, nthreads);
    return true;
  }
  if (!tb && (M <= 32 || (ta && K <= 16))) {
    gemm_direct<X>(ta, M, N, K, A, lda, B, ldb, C, ldc, bias, ep, nthreads);
    return true;
  }
  // Row sums of op(A) (db) ride along with the packing of A = dy^T.
  double *rs = rowsum && ta ? static_cast<double *>(std::calloc((size_t)M, sizeof(double))) : nullptr;
  if (rs) *rowsum_done = true;
  if (K > X::KC && beta != 0) {
    // Partial sums live in C between K blocks, so the old C must be set aside.
    T *S = static_cast<T *>(std::malloc(sizeof(T) * M * N));
    if (!S) {
      std::free(rs);
      *rowsum_done = false;
      return false;
    }
    Ep<T> ep1{T(1), T(0), act};
    const bool ok = gemm_packed<X>(ta, tb, M, N, K, A, lda, B, ldb, S, N, bias, ep1, nthreads, rs);
    if (ok) blend_into<X>(M, N, S, C, ldc, (T)alpha, (T)beta);
    std::free(S);
    if (!ok) {
      std::free(rs);
      *rowsum_done = false;
      return false;
    }
  } else if (!gemm_packed<X>(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, bias, ep, nthreads, rs)) {
    std::free(rs);
    *rowsum_done = false;
    return false;
  }
  if (rs) {
    for (int64_t i = 0; i < M; ++i)
      rowsum[i] = (T)(beta == 0 ? alpha * rs[i] : alpha * rs[i] + beta * (double)rowsum[i]);
    std::free(rs);
  }
  return true;
}

// ---- elementwise ---------------------------------------------------------------------
inline int ew_threads(int nthreads, int64_t elems) {
  return (int)imax(1, imin(nthreads, elems / 65536));
}

// Calls f(row, c0, c1) over all rows*cols elements in row segments, chunks of
// 32K elements (whole cache lines) claimed dynamically by the threads.
template <class F>
void for_segments(int64_t rows, int64_t cols, int nt, const F &f) {
  const int64_t total = rows * cols;
  if (total <= 0) return;
  const int64_t chunk = 32768;
  parallel_chunks(nt, cdiv(total, chunk), 1, [&](int64_t q) {
    const int64_t e1 = imin(total, (q + 1) * chunk);
    int64_t e = q * chunk;
    while (e < e1) {
      const int64_t r = e / cols, c0 = e % cols, c1 = imin(cols, c0 + (e1 - e));
      f(r, c0, c1);
      e += c1 - c0;
    }
  });
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

// db (out) = alpha * sum_rows dy (n, out) + beta * db: blocks of 8W columns kept
// in registers while the rows stream by.
template <class X>
void column_sums(const typename X::T *dy, int64_t lddy, int64_t n, int64_t out,
                 typename X::T *db, double alpha, double beta, int nthreads) {
  using T = typename X::T;
  using V = typename X::V;
  constexpr int W = X::W, CB = 8 * W;
  const int64_t blocks = cdiv(out, CB);
  const int nt = (int)imax(1, imin(imin(nthreads, blocks), n * out / 65536));
  parallel_chunks(nt, blocks, 1, [&](int64_t bl) {
    const int64_t j0 = bl * CB;
    const int w = (int)imin(CB, out - j0);
    V acc[8];
    for (int q = 0; q < 8; ++q) acc[q] = X::zero();
    if (w == CB) {
      for (int64_t i = 0; i < n; ++i) {
        const T *r = dy + i * lddy + j0;
#pragma GCC unroll 8
        for (int q = 0; q < 8; ++q) acc[q] = X::add(acc[q], X::load(r + q * W));
      }
    } else {
      for (int64_t i = 0; i < n; ++i) {
        const T *r = dy + i * lddy + j0;
        for (int q = 0; q < 8; ++q) {
          const int m = (int)imax(0, imin(W, w - q * W));
          if (m) acc[q] = X::add(acc[q], X::loadn(r + q * W, m));
        }
      }
    }
    const V va = X::set1((T)alpha), vb = X::set1((T)beta);
    for (int q = 0; q < 8; ++q) {
      const int m = (int)imax(0, imin(W, w - q * W));
      if (!m) break;
      V v = X::mul(va, acc[q]);
      if (beta != 0) v = X::fma(vb, X::loadn(db + j0 + q * W, m), v);
      X::storen(db + j0 + q * W, v, m);
    }
  });
}

// ---- losses (float32; float64 stays on the scalar reference) ---------------------------
// Row r of the batch goes to share r * n / rows; per-share partial sums are added
// in share order, so the value does not depend on which thread ran what.
template <class X, class RowFn>
double rows_sum(int64_t rows, int64_t cols, int nthreads, const RowFn &row) {
  const int nt = (int)imin(64, ew_threads(nthreads, rows * cols));
  double part[64] = {};
  run_parallel(nt, [&](int t, int n) {
    double acc = 0;
    for (int64_t r = rows * t / n; r < rows * (t + 1) / n; ++r) acc += row(r);
    part[t] = acc;
  });
  double total = 0;
  for (int t = 0; t < nt; ++t) total += part[t];
  return total;
}

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
  const double total = rows_sum<X>(a.rows, cols, nthreads, [&](int64_t r) {
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
  const double total = rows_sum<X>(a.rows, cols, nthreads, [&](int64_t r) {
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
#define LW_DEFINE_ISA_ENTRIES(isa, F, D)                                                        \
  }                                                                                             \
  bool gemm_f32_##isa(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float *A,         \
                      int64_t lda, const float *B, int64_t ldb, float *C, int64_t ldc,           \
                      double alpha, double beta, const float *bias, int act, int nthreads,       \
                      float *rowsum, bool *rowsum_done) {                                        \
    return gemm_entry<F>(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, alpha, beta, bias, act,         \
                         nthreads, rowsum, rowsum_done);                                        \
  }                                                                                             \
  bool gemm_f64_##isa(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const double *A,        \
                      int64_t lda, const double *B, int64_t ldb, double *C, int64_t ldc,         \
                      double alpha, double beta, const double *bias, int act, int nthreads,      \
                      double *rowsum, bool *rowsum_done) {                                       \
    return gemm_entry<D>(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, alpha, beta, bias, act,         \
                         nthreads, rowsum, rowsum_done);                                        \
  }                                                                                             \
  bool activation_forward_##isa(const ActivationForwardArgs &a, int nthreads) {                  \
    if (a.dtype == DType::F32) act_forward<F>(a, nthreads);                                     \
    else act_forward<D>(a, nthreads);                                                           \
    return true;                                                                                \
  }                                                                                             \
  bool activation_backward_##isa(const ActivationBackwardArgs &a, int nthreads) {                \
    if (a.dtype == DType::F32) act_backward<F>(a, nthreads);                                    \
    else act_backward<D>(a, nthreads);                                                          \
    return true;                                                                                \
  }                                                                                             \
  bool softmax_##isa(const SoftmaxArgs &a, int nthreads) {                                       \
    if (a.dtype == DType::F32) softmax<F>(a, nthreads);                                         \
    else softmax<D>(a, nthreads);                                                               \
    return true;                                                                                \
  }                                                                                             \
  bool loss_##isa(const LossArgs &a, int nthreads, double *value) {                             \
    if (a.dtype != DType::F32 || a.rows <= 0) return false;                                     \
    if (a.loss == LW_LOSS_QUADRATIC) *value = quadratic_loss<F>(a, nthreads);                    \
    else if (a.loss == LW_LOSS_SOFTMAX_CROSS_ENTROPY) *value = softmax_xent_loss<F>(a, nthreads); \
    else return false;                                                                          \
    return true;                                                                                \
  }                                                                                             \
  bool column_sums_##isa(DType dt, const void *dy, int64_t lddy, int64_t n, int64_t out,         \
                         void *db, double alpha, double beta, int nthreads) {                    \
    if (dt == DType::F32)                                                                       \
      column_sums<F>(static_cast<const float *>(dy), lddy, n, out, static_cast<float *>(db),    \
                     alpha, beta, nthreads);                                                    \
    else                                                                                        \
      column_sums<D>(static_cast<const double *>(dy), lddy, n, out, static_cast<double *>(db),  \
                     alpha, beta, nthreads);                                                    \
    return true;                                                                                \
  }                                                                                             \
  namespace {
