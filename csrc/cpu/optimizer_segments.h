// optimizer_segments.h -- the parallel split of an optimizer pass over the
// thread pool, shared by the reference loop (optimizer.cpp) and the vector
// bodies (simd/optimizer.h). Include inside an anonymous namespace (define
// LW_OPTIMIZER_SEGMENTS_IN_ANON_NS): ISA TUs get their own copy, so no code
// built with wider ISA flags can be picked by the linker for generic code. For
// the same reason it uses no std:: templates.
#ifndef LW_OPTIMIZER_SEGMENTS_IN_ANON_NS
#error "include optimizer_segments.h inside an anonymous namespace"
#endif

// Elements per work item: 32K (whole cache lines), claimed dynamically so a
// thread the OS delays does not hold up the others; a thread per 64K elements.
constexpr int64_t kOptimizerChunk = 32768;
constexpr int64_t kOptimizerElemsPerThread = 65536;

// Calls f(offset, n) over every element of the (rows, cols, ld) tensor of `a`
// in runs of contiguous elements (offset in elements from the tensor's start).
template <class F>
void for_optimizer_segments(const OptimizerStepArgs &a, int nthreads, const F &f) {
  const bool flat = a.ld == a.cols || a.rows == 1;
  const int64_t rows = flat ? 1 : a.rows, cols = flat ? a.rows * a.cols : a.cols;
  const int64_t total = rows * cols;
  if (total <= 0) return;
  const int64_t chunks = (total + kOptimizerChunk - 1) / kOptimizerChunk;
  int64_t want = total / kOptimizerElemsPerThread;
  if (want > nthreads) want = nthreads;
  if (want > chunks) want = chunks;
  const int nt = want < 1 ? 1 : (int)want;
  struct Job {
    const F *f;
    int64_t rows, cols, ld, total, chunks;
    int64_t next;
  } job{&f, rows, cols, a.ld, total, chunks, 0};
  auto body = [](void *ctx, int, int) {
    Job &j = *static_cast<Job *>(ctx);
    for (;;) {
      const int64_t q = __atomic_fetch_add(&j.next, 1, __ATOMIC_RELAXED);
      if (q >= j.chunks) break;
      int64_t e = q * kOptimizerChunk;
      const int64_t e1 = e + kOptimizerChunk < j.total ? e + kOptimizerChunk : j.total;
      while (e < e1) {
        const int64_t r = e / j.cols, c0 = e % j.cols;
        const int64_t c1 = c0 + (e1 - e) < j.cols ? c0 + (e1 - e) : j.cols;
        (*j.f)(r * j.ld + c0, c1 - c0);
        e += c1 - c0;
      }
    }
  };
  if (nt <= 1) body(&job, 0, 1);
  else parallel_run(nt, body, &job);
}
