// threadpool.cpp -- see threadpool.h. One job at a time: the caller publishes
// (fn, ctx, n) under the mutex with a new generation number, workers 1..n-1 run
// their share and count down `remaining`; the last one wakes the caller.
#include "threadpool.h"

#include <atomic>
#include <condition_variable>
#include <cstdint>
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
    if (!busy.owns_lock()) {
      for (int t = 0; t < n; ++t) fn(ctx, t, n);
      return;
    }
    while ((int)workers_.size() < n - 1) {
      const int tid = (int)workers_.size() + 1;
      workers_.emplace_back([this, tid] { worker(tid); });
    }
    {
      std::lock_guard<std::mutex> lk(m_);
      fn_ = fn;
      ctx_ = ctx;
      n_ = n;
      remaining_.store(n - 1, std::memory_order_relaxed);
      ++gen_;
      agen_.store(gen_, std::memory_order_release);
    }
    cv_work_.notify_all();
    fn(ctx, 0, n);
    for (int s = 0; s < kSpin && remaining_.load(std::memory_order_acquire) > 0; ++s) cpu_relax();
    if (remaining_.load(std::memory_order_acquire) > 0) {
      std::unique_lock<std::mutex> lk(m_);
      cv_done_.wait(lk, [this] { return remaining_.load(std::memory_order_acquire) == 0; });
    }
  }

 private:
  void worker(int tid) {
    uint64_t seen = 0;
    {
      std::lock_guard<std::mutex> lk(m_);
      seen = gen_;  // a worker spawned for the current job must still run it
      if (tid < n_ && remaining_.load() > 0) seen = gen_ - 1;
    }
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
      if (tid >= n) continue;
      fn(ctx, tid, n);
      if (remaining_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lk(m_);
        cv_done_.notify_one();
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
  std::atomic<uint64_t> agen_{0};
  std::atomic<int> remaining_{0};
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

void parallel_run(int nthreads, TaskFn fn, void *ctx) {
  if (nthreads <= 1) {
    fn(ctx, 0, 1);
    return;
  }
  pool().run(nthreads, fn, ctx);
}

}  // namespace lw::cpu
