// threadpool.h -- the persistent worker pool behind the vectorized CPU kernels.
// Idle workers sleep on a condition variable (after a spin of a few
// microseconds), so between calls the library uses no CPU: OpenMP's default
// spinning barrier burns a core after every call, which on a shared or
// oversubscribed machine delays everyone, including our own next call.
#pragma once

namespace lw::cpu {

using TaskFn = void (*)(void *ctx, int tid, int nthreads);

// Runs fn(ctx, t, n) exactly once for every t in [0, n), n = nthreads, and
// returns when all have returned. The caller runs t = 0 and any share no pool
// thread has started by then, so fn must not assume distinct threads per t
// (per-thread scratch is fine: shares on one thread run one after another). A caller
// that finds the pool busy (another application thread is inside a kernel)
// runs the n shares itself, one after another, instead of waiting.
void parallel_run(int nthreads, TaskFn fn, void *ctx);

}  // namespace lw::cpu
