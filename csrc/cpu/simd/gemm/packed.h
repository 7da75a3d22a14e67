// simd/gemm/packed.h -- the cache-blocked, packed GEMM. Part of simd_impl.h.
#ifndef LW_SIMD_IMPL_INCLUDED_IN_ANON_NS
#error "include through simd_impl.h, inside an anonymous namespace of an ISA TU"
#endif

// ---- packed GEMM ---------------------------------------------------------------------
// The cache blocks MC, KC, NC come from the caches at run time (cpuinfo.h).
// Phase 1 packs all of op(A) once into a buffer shared by the threads: per K
// block pc (KC deep), MR-row panels [k][MR]. Phase 2 cuts C into tasks of MT
// rows x NCH (<= NC) columns claimed dynamically; a task packs its B block
// (KC x NCH, L3) per pc and runs the GotoBLAS inner loops over it: ic (MC rows
// of packed A, L2) -> jr (NR, B micro-panel in L1) -> ir (MR). Dynamic tasks keep both
// cores busy when one of them is shared with another process, and scale past 2.
// Both live on the calling thread: pool threads get slices of tl_bpack.
thread_local Scratch tl_apack, tl_bpack;

inline int64_t round_up(int64_t a, int64_t b) { return cdiv(a, b) * b; }

// Returns false, before touching C, when a packing buffer cannot be allocated.
template <class X>
bool gemm_packed(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const typename X::T *A,
                 int64_t lda, const typename X::T *B, int64_t ldb, typename X::T *C, int64_t ldc,
                 const typename X::T *bias, const Ep<typename X::T> &ep, int nthreads,
                 const GemmBlocks &blk, double *rsum = nullptr) {
  using T = typename X::T;
  constexpr int MR = X::MR, NR = 2 * X::W;
  const int64_t MC = blk.mc;
  const int64_t nk = cdiv(K, blk.kc);
  const int64_t kcb = round_up(cdiv(K, nk), 8);
  const int64_t mpan = cdiv(M, MR), Mp = mpan * MR;
  const int nt = threads_for(2 * M * N * K, grain::kGemmFlops, nthreads);

  // Phase 2's task shape: MT x NCH, at least ~3 tasks per thread when the shape allows.
  int64_t NCH = imin(round_up(N, NR), blk.nc), MT = imin(Mp, 8 * MC);
  while (cdiv(M, MT) * cdiv(N, NCH) < 3 * nt && NCH > 2 * NR) NCH = round_up(NCH / 2, NR);
  while (cdiv(M, MT) * cdiv(N, NCH) < 3 * nt && MT > MC) MT = round_up(MT / 2, MR);
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
      for (int64_t ic = i0; ic < i1; ic += MC) {
        const int64_t ie = imin(i1, ic + MC);
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
