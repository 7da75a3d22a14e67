// threadpool.h -- the one thread runtime of the CPU kernels: a persistent worker
// pool, the single policy that decides how many of its threads a job gets, and
// the loop helpers every kernel (reference and vectorized) parallelizes with.
// Idle workers sleep on a condition variable (after a spin of a few
// microseconds), so between calls the library uses no CPU: OpenMP's default
// spinning barrier burns a core after every call, which on a shared or
// oversubscribed machine delays everyone, including our own next call.
#pragma once

#include <cstdint>

namespace lw::cpu {

using TaskFn = void (*)(void *ctx, int tid, int nthreads);

// Runs fn(ctx, t, n) exactly once for every t in [0, n), n = nthreads, and
// returns when all have returned. The caller runs t = 0 and any share no pool
// thread has started by then, so fn must not assume distinct threads per t
// (per-thread scratch is fine: shares on one thread run one after another). A caller
// that finds the pool busy (another application thread is inside a kernel)
// runs the n shares itself, one after another, instead of waiting.
void parallel_run(int nthreads, TaskFn fn, void *ctx);

// Threads a handle uses by default: OMP_NUM_THREADS when set to a positive
// integer (what users already set to cap NumPy, PyTorch and OpenMP code),
// otherwise the CPUs this process may run on (its affinity mask).
int max_threads();

// ---- the threading policy ------------------------------------------------------
// A job of `work` units gets one thread per `grain` units, at least 1 and at most
// `nthreads` (the handle's setting): a thread's wake-up and join cost a few
// microseconds, so each thread must bring at least `grain` units of work.
// Defined out of line (threadpool.cpp) so the ISA translation units, compiled
// with wider instruction sets, never emit their own copy of it.
int threads_for(int64_t work, int64_t grain, int nthreads);

// The grains, one per kind of work, all in one place.
namespace grain {
// Elements of a streaming pass (activations, softmax, losses, column sums): a few
// cycles each, so about 64K elements (tens of microseconds) per thread.
constexpr int64_t kStream = 65536;
// Elements of Bernoulli sampling: the counter-based generator costs ~4x a
// streaming element.
constexpr int64_t kSample = 16384;
// Flops of a packed GEMM (packing and the blocked loops amortize early).
constexpr int64_t kGemmFlops = 2000000;
// Flops of the unpacked small-batch GEMM paths: a batch-1 GEMV stays on the
// calling thread, a second thread joins past ~4 MFLOP.
constexpr int64_t kGemvFlops = 4000000;
}  // namespace grain

// ---- loop helpers --------------------------------------------------------------
// These templates are instantiated only with the callers' lambdas, whose types
// are distinct per translation unit, so an ISA unit's instantiation can never be
// picked by the linker for generic code (the ODR trap simd_impl.h describes).

// f(t, n) on n pool threads; the captureless trampoline keeps the pool
// interface a plain function pointer.
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

// body(i) for i in [0, count) on nt threads, in about 4 chunks per thread.
template <class F>
void parallel_for(int nt, int64_t count, const F &body) {
  const int64_t per = nt > 0 ? count / (4 * (int64_t)nt) : count;
  parallel_chunks(nt, count, per > 1 ? per : 1, body);
}

// The deterministic parallel sum of row(r) over rows [0, rows): row r goes to
// share r * n / rows, per-share partial sums are added in share order, so for a
// given thread count the value does not depend on which thread ran what.
template <class RowFn>
double sum_rows(int64_t rows, int nt, const RowFn &row) {
  constexpr int kMaxShares = 64;
  if (nt > kMaxShares) nt = kMaxShares;
  if (nt < 1) nt = 1;
  double part[kMaxShares] = {};
  run_parallel(nt, [&](int t, int n) {
    double acc = 0;
    for (int64_t r = rows * t / n; r < rows * (t + 1) / n; ++r) acc += row(r);
    part[t] = acc;
  });
  double total = 0;
  for (int t = 0; t < nt; ++t) total += part[t];
  return total;
}

}  // namespace lw::cpu
