// threadpool.cpp -- see threadpool.h. One job at a time: the caller publishes
// (fn, ctx, n) under the mutex with a new generation number and wakes the
// workers; shares 1..n-1 go to whoever claims them first (see Pool).
#include "threadpool.h"

#include <sched.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#include <unistd.h>

namespace lw::cpu {
namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// ~10-30 us of polling before sleeping: long enough to catch back-to-back
// kernels of one training step, short enough not to matter when idle.
constexpr int kSpin = 4000;

// Shares are claimed, not assigned: `slots_` packs (job generation << 16 | next
// share). The caller runs share 0 and then claims whatever shares no worker has
// started yet, so a worker the OS has not scheduled (shared machine) costs
// nothing: the caller waits only for shares that are actually running. A
// worker that wakes late can never claim a share of a newer job (the
// generation in the CAS word would not match).
class Pool {
 public:
  ~Pool() {
    {
      std::lock_guard<std::mutex> lk(m_);
      stop_ = true;
      ++gen_;
      agen_.store(gen_, std::memory_order_release);
    }
    cv_work_.notify_all();
    for (auto &t : workers_) t.join();
  }

  void run(int n, TaskFn fn, void *ctx) {
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    if (!busy.owns_lock() || n > 65535) {
      for (int t = 0; t < n; ++t) fn(ctx, t, n);
      return;
    }
    while ((int)workers_.size() < n - 1) workers_.emplace_back([this] { worker(); });
    uint64_t gen;
    {
      std::lock_guard<std::mutex> lk(m_);
      fn_ = fn;
      ctx_ = ctx;
      n_ = n;
      gen = ++gen_;
      finished_.store(0, std::memory_order_relaxed);
      slots_.store(gen << 16 | 1u, std::memory_order_release);
      agen_.store(gen, std::memory_order_release);
    }
    cv_work_.notify_all();
    fn(ctx, 0, n);
    for (int t; (t = claim(gen, n)) >= 0;) {
      fn(ctx, t, n);
      finished_.fetch_add(1, std::memory_order_acq_rel);
    }
    for (int s = 0; s < kSpin && finished_.load(std::memory_order_acquire) < n - 1; ++s) cpu_relax();
    if (finished_.load(std::memory_order_acquire) < n - 1) {
      std::unique_lock<std::mutex> lk(m_);
      cv_done_.wait(lk, [&] { return finished_.load(std::memory_order_acquire) >= n - 1; });
    }
  }

 private:
  // Next unstarted share of job `gen`, or -1.
  int claim(uint64_t gen, int n) {
    uint64_t v = slots_.load(std::memory_order_acquire);
    for (;;) {
      if ((v >> 16) != gen || (int)(v & 0xffff) >= n) return -1;
      if (slots_.compare_exchange_weak(v, v + 1, std::memory_order_acq_rel)) return (int)(v & 0xffff);
    }
  }

  void worker() {
    uint64_t seen = 0;
    for (;;) {
      for (int s = 0; s < kSpin && agen_.load(std::memory_order_acquire) == seen; ++s) cpu_relax();
      TaskFn fn;
      void *ctx;
      int n;
      {
        std::unique_lock<std::mutex> lk(m_);
        cv_work_.wait(lk, [&] { return gen_ != seen; });
        if (stop_) return;
        seen = gen_;
        fn = fn_;
        ctx = ctx_;
        n = n_;
      }
      for (int t; (t = claim(seen, n)) >= 0;) {
        fn(ctx, t, n);
        if (finished_.fetch_add(1, std::memory_order_acq_rel) + 1 == n - 1) {
          std::lock_guard<std::mutex> lk(m_);
          cv_done_.notify_one();
        }
      }
    }
  }

  std::mutex busy_, m_;
  std::condition_variable cv_work_, cv_done_;
  std::vector<std::thread> workers_;
  TaskFn fn_ = nullptr;
  void *ctx_ = nullptr;
  int n_ = 0;
  uint64_t gen_ = 0;
  std::atomic<uint64_t> agen_{0}, slots_{0};
  std::atomic<int> finished_{0};
  bool stop_ = false;
};

// A forked child inherits the pool object but not its threads: it gets a fresh
// pool (the parent's one is leaked in the child, never touched again).
Pool &pool() {
  static Pool *p = nullptr;
  static pid_t owner = 0;
  static std::mutex init;
  std::lock_guard<std::mutex> lk(init);
  if (!p || owner != getpid()) {
    p = new Pool;
    owner = getpid();
  }
  return *p;
}

}  // namespace

int threads_for(int64_t work, int64_t grain, int nthreads) {
  if (nthreads <= 1 || grain <= 0) return 1;
  const int64_t t = work / grain;
  return t < 1 ? 1 : (t < nthreads ? (int)t : nthreads);
}

int max_threads() {
  if (const char *env = std::getenv("OMP_NUM_THREADS")) {
    // The first entry of the list OpenMP accepts ("4" or "4,2"); anything else is ignored.
    char *end = nullptr;
    const long n = std::strtol(env, &end, 10);
    if (end != env && (*end == '\0' || *end == ',') && n > 0 && n <= 65535) return (int)n;
  }
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw > 0 ? (int)hw : 1;
}

void parallel_run(int nthreads, TaskFn fn, void *ctx) {
  if (nthreads <= 1) {
    fn(ctx, 0, 1);
    return;
  }
  pool().run(nthreads, fn, ctx);
}

}  // namespace lw::cpu
