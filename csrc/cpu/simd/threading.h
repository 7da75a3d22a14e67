// simd/threading.h -- helpers every vectorized kernel family uses: integer
// helpers, the streaming-pass thread count and row segmentation (on the pool of
// threadpool.h), and per-thread scratch buffers. Part of simd_impl.h.
#ifndef LW_SIMD_IMPL_INCLUDED_IN_ANON_NS
#error "include through simd_impl.h, inside an anonymous namespace of an ISA TU"
#endif

inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }
inline int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

inline int ew_threads(int nthreads, int64_t elems) { return threads_for(elems, grain::kStream, nthreads); }

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
