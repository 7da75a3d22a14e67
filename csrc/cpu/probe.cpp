// probe.cpp -- machine probes for the benchmarks: the float32 FMA peak and the
// copy bandwidth this process actually gets, measured with the same ISA choice
// (isa.h) and the same thread pool (threadpool.h) as the kernels, so that
// "fraction of peak" compares like with like.
//
// The ISA bodies use function target attributes rather than *_avx2.cpp /
// *_avx512.cpp files: each is a few lines and nothing else in this file is
// built for a wider ISA, so no wide instruction can run on a CPU without it
// (the dispatch below only calls a body that active() allows).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define LW_PROBE_X86 1
#endif

#include "../common/backend.h"
#include "isa.h"
#include "threadpool.h"

namespace lw::cpu {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// ---- FMA peak ----------------------------------------------------------------
// Independent accumulator chains, more of them than FMA latency x FMA ports on
// current cores (4 cycles x 2 ports = 8), no memory operands: the loop runs at
// the core's multiply-add throughput. Each returns the flops it did and stores
// a value derived from every chain into *sink so no chain can be removed.
// a = a * b + c with b just below 1 stays bounded and never goes subnormal.

#ifdef LW_PROBE_X86
__attribute__((target("avx512f"))) double fma_chains_avx512(int64_t iters, float *sink) {
  constexpr int kChains = 16;
  __m512 a[kChains];
  for (int i = 0; i < kChains; ++i) a[i] = _mm512_set1_ps(1.0f + 0.01f * i);
  const __m512 b = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
  for (int64_t k = 0; k < iters; ++k) {
#pragma GCC unroll 16
    for (int i = 0; i < kChains; ++i) a[i] = _mm512_fmadd_ps(a[i], b, c);
  }
  __m512 s = a[0];
  for (int i = 1; i < kChains; ++i) s = _mm512_add_ps(s, a[i]);
  alignas(64) float lanes[16];  // (not _mm512_reduce_add_ps: GCC 12 warns inside it)
  _mm512_store_ps(lanes, s);
  float total = 0;
  for (float v : lanes) total += v;
  *sink = total;
  return 2.0 * 16 * kChains * static_cast<double>(iters);
}

__attribute__((target("avx2,fma"))) double fma_chains_avx2(int64_t iters, float *sink) {
  constexpr int kChains = 12;  // 16 ymm registers: 12 chains + b + c
  __m256 a[kChains];
  for (int i = 0; i < kChains; ++i) a[i] = _mm256_set1_ps(1.0f + 0.01f * i);
  const __m256 b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
  for (int64_t k = 0; k < iters; ++k) {
#pragma GCC unroll 16
    for (int i = 0; i < kChains; ++i) a[i] = _mm256_fmadd_ps(a[i], b, c);
  }
  __m256 s = a[0];
  for (int i = 1; i < kChains; ++i) s = _mm256_add_ps(s, a[i]);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, s);
  float total = 0;
  for (float v : lanes) total += v;
  *sink = total;
  return 2.0 * 8 * kChains * static_cast<double>(iters);
}
#endif

// Baseline x86-64 has no FMA: the generic kernels multiply and add, and so does
// this loop (the compiler vectorizes the independent lanes with SSE).
double fma_chains_generic(int64_t iters, float *sink) {
  constexpr int kLanes = 32;
  float a[kLanes];
  for (int i = 0; i < kLanes; ++i) a[i] = 1.0f + 0.01f * i;
  const float b = 0.999999f, c = 1e-7f;
  for (int64_t k = 0; k < iters; ++k) {
#pragma GCC unroll 32
    for (int i = 0; i < kLanes; ++i) a[i] = a[i] * b + c;
  }
  float total = 0;
  for (float v : a) total += v;
  *sink = total;
  return 2.0 * kLanes * static_cast<double>(iters);
}

double fma_chains(int64_t iters, float *sink) {
  switch (active()) {
#ifdef LW_PROBE_X86
    case Isa::Avx512: return fma_chains_avx512(iters, sink);
    case Isa::Avx2: return fma_chains_avx2(iters, sink);
#endif
    default: return fma_chains_generic(iters, sink);
  }
}

struct FmaJob {
  int64_t iters;
  std::vector<double> flops;
  std::vector<float> sinks;
};

void fma_share(void *ctx, int tid, int) {
  auto *job = static_cast<FmaJob *>(ctx);
  job->flops[tid] = fma_chains(job->iters, &job->sinks[tid]);
}

// GFLOP/s of one run of `iters` iterations on every share, by the wall clock
// of the whole run (a share the OS does not schedule makes the run longer).
double fma_run(int nthreads, int64_t iters, double *seconds) {
  FmaJob job{iters, std::vector<double>(nthreads), std::vector<float>(nthreads)};
  const auto t0 = Clock::now();
  parallel_run(nthreads, fma_share, &job);
  *seconds = seconds_since(t0);
  double flops = 0;
  for (double f : job.flops) flops += f;
  volatile float keep = 0;
  for (float s : job.sinks) keep = keep + s;
  (void)keep;
  return flops / std::max(*seconds, 1e-9) / 1e9;
}

// ---- copy bandwidth --------------------------------------------------------------

struct CopyJob {
  unsigned char *dst;
  const unsigned char *src;
  size_t bytes;
  bool touch;  // first pass: each share writes its own pages (first-touch placement)
};

void copy_share(void *ctx, int tid, int n) {
  auto *job = static_cast<CopyJob *>(ctx);
  // 4 KiB-aligned slices so no two shares write the same page.
  const size_t pages = (job->bytes + 4095) / 4096;
  const size_t begin = std::min(job->bytes, pages * tid / n * 4096);
  const size_t end = std::min(job->bytes, pages * (tid + 1) / n * 4096);
  if (end <= begin) return;
  if (job->touch) {
    std::memset(const_cast<unsigned char *>(job->src) + begin, tid + 1, end - begin);
    std::memset(job->dst + begin, 0, end - begin);
  } else {
    std::memcpy(job->dst + begin, job->src + begin, end - begin);
  }
}

lwStatus_t measure_fma_peak(int nthreads, double min_seconds, int repeats, double *gflops) {
  // Double the iteration count until one run lasts min_seconds, then keep the
  // best of `repeats` runs: the peak is what the core can do, and anything
  // slower is another process or a frequency ramp, not the core.
  int64_t iters = 1 << 14;
  double secs = 0, best = 0;
  for (;;) {
    best = fma_run(nthreads, iters, &secs);
    if (secs >= min_seconds || iters > (int64_t(1) << 40)) break;
    const double scale = secs > 0 ? std::min(8.0, 1.2 * min_seconds / secs) : 8.0;
    iters = static_cast<int64_t>(static_cast<double>(iters) * std::max(2.0, scale));
  }
  for (int r = 1; r < repeats; ++r) best = std::max(best, fma_run(nthreads, iters, &secs));
  *gflops = best;
  return LW_STATUS_SUCCESS;
}

lwStatus_t measure_copy_bandwidth(int nthreads, size_t bytes, int repeats, double *gbps) {
  void *src = std::aligned_alloc(4096, (bytes + 4095) / 4096 * 4096);
  void *dst = std::aligned_alloc(4096, (bytes + 4095) / 4096 * 4096);
  if (!src || !dst) {
    std::free(src);
    std::free(dst);
    return fail(LW_STATUS_ALLOC_FAILED,
                "lwMeasureCopyBandwidth: could not allocate 2 x " + std::to_string(bytes) + " bytes");
  }
  CopyJob job{static_cast<unsigned char *>(dst), static_cast<const unsigned char *>(src), bytes, true};
  parallel_run(nthreads, copy_share, &job);
  job.touch = false;
  parallel_run(nthreads, copy_share, &job);  // warm: TLB, frequency
  double best = 0;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = Clock::now();
    parallel_run(nthreads, copy_share, &job);
    best = std::max(best, 2.0 * static_cast<double>(bytes) / std::max(seconds_since(t0), 1e-9) / 1e9);
  }
  std::free(src);
  std::free(dst);
  *gbps = best;
  return LW_STATUS_SUCCESS;
}

}  // namespace
}  // namespace lw::cpu

// ---- C API -------------------------------------------------------------------------
// Validation here, like every entry point: nothing runs before the arguments pass.

extern "C" lwStatus_t lwMeasureFmaPeak(int nthreads, double min_seconds, int repeats, double *gflops) {
  if (!gflops) return lw::fail(LW_STATUS_BAD_PARAM, "gflops: output pointer is NULL");
  *gflops = 0;
  if (nthreads < 1 || nthreads > 4096)
    return lw::fail(LW_STATUS_BAD_PARAM, "nthreads: must be in [1, 4096], got " + std::to_string(nthreads));
  if (!(min_seconds > 0 && min_seconds <= 60))
    return lw::fail(LW_STATUS_BAD_PARAM, "min_seconds: must be in (0, 60], got " + std::to_string(min_seconds));
  if (repeats < 1 || repeats > 1000)
    return lw::fail(LW_STATUS_BAD_PARAM, "repeats: must be in [1, 1000], got " + std::to_string(repeats));
  return lw::cpu::measure_fma_peak(nthreads, min_seconds, repeats, gflops);
}

extern "C" lwStatus_t lwMeasureCopyBandwidth(int nthreads, size_t bytes, int repeats, double *gbps) {
  if (!gbps) return lw::fail(LW_STATUS_BAD_PARAM, "gbps: output pointer is NULL");
  *gbps = 0;
  if (nthreads < 1 || nthreads > 4096)
    return lw::fail(LW_STATUS_BAD_PARAM, "nthreads: must be in [1, 4096], got " + std::to_string(nthreads));
  constexpr size_t kMaxBytes = size_t(1) << 36;  // 64 GiB per buffer: a typo, not a probe
  if (bytes < 4096 || bytes > kMaxBytes)
    return lw::fail(LW_STATUS_BAD_PARAM,
                    "bytes: must be in [4096, 2^36], got " + std::to_string(bytes));
  if (repeats < 1 || repeats > 1000)
    return lw::fail(LW_STATUS_BAD_PARAM, "repeats: must be in [1, 1000], got " + std::to_string(repeats));
  return lw::cpu::measure_copy_bandwidth(nthreads, bytes, repeats, gbps);
}
