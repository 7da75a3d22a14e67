// cuda_common.h -- private helpers of the CUDA backend: launch checking mapped
// to lwStatus_t, a device guard (a handle's kernels always run on the device it
// was created on, whatever device the calling thread has current), the layout
// of the per-handle scratch buffer, and small launch-shape helpers.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "../common/backend.h"

namespace lw::cuda {

inline cudaStream_t stream_of(const CudaContext &ctx) { return static_cast<cudaStream_t>(ctx.stream); }

// Maps a CUDA error to EXECUTION_FAILED with "<what>: <CUDA error string>".
inline lwStatus_t cuda_fail(cudaError_t err, const char *what) {
  return fail(err == cudaErrorMemoryAllocation ? LW_STATUS_ALLOC_FAILED : LW_STATUS_EXECUTION_FAILED,
              std::string(what) + ": CUDA error " + std::to_string((int)err) + " (" +
                  cudaGetErrorName(err) + "): " + cudaGetErrorString(err));
}

// Call right after a kernel launch: a bad configuration (or an earlier
// asynchronous fault) shows up here. Clears the error so it is reported once.
inline lwStatus_t check_launch(const char *what) {
  const cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? LW_STATUS_SUCCESS : cuda_fail(err, what);
}

#define LW_CUDA_TRY(expr, what)                         \
  do {                                                  \
    const cudaError_t lw_err_ = (expr);                 \
    if (lw_err_ != cudaSuccess) {                       \
      (void)cudaGetLastError();                         \
      return ::lw::cuda::cuda_fail(lw_err_, what);      \
    }                                                   \
  } while (0)

// Makes ctx.device current for the scope and restores the caller's device.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    if (cudaGetDevice(&prev_) != cudaSuccess) {
      (void)cudaGetLastError();
      prev_ = -1;
    }
    if (prev_ != device) {
      err_ = cudaSetDevice(device);
      if (err_ != cudaSuccess) (void)cudaGetLastError();
    }
  }
  ~DeviceGuard() {
    if (prev_ >= 0 && err_ == cudaSuccess) (void)cudaSetDevice(prev_);
  }
  cudaError_t error() const { return err_; }
  DeviceGuard(const DeviceGuard &) = delete;
  DeviceGuard &operator=(const DeviceGuard &) = delete;

 private:
  int prev_ = -1;
  cudaError_t err_ = cudaSuccess;
};

#define LW_CUDA_DEVICE_GUARD(ctx, what)                                   \
  ::lw::cuda::DeviceGuard lw_guard_((ctx).device);                        \
  if (lw_guard_.error() != cudaSuccess) return ::lw::cuda::cuda_fail(lw_guard_.error(), what)

// Per-handle scratch (cudaMalloc'd once in context_create). The loss kernels
// reduce into it: block partial sums, then one value and the first bad label row.
struct LossScratch {
  double value;                 // sum over the batch (before the 1/n scaling)
  unsigned long long bad_row;   // first row with an out-of-range label, or ~0
};
constexpr int kLossMaxBlocks = 1024;  // partial sums: a fixed count for a given shape
constexpr size_t kLossPartialsOffset = 256;
constexpr size_t kScratchBytes = kLossPartialsOffset + kLossMaxBlocks * sizeof(double);

// Streaming multiprocessors of the current device (cached per device id).
int sm_count(int device);

// 2-D launch shape for elementwise kernels over (rows, cols): x walks columns,
// y walks rows; both loops are grid-stride so any size fits the grid limits.
struct Launch2d {
  dim3 grid, block;
};
inline Launch2d launch_2d(int64_t rows, int64_t cols, int threads = 256) {
  const int64_t bx = (cols + threads - 1) / threads;
  const int64_t gx = bx < 65535 ? bx : 65535;
  int64_t gy = rows < 65535 ? rows : 65535;
  // Enough blocks in total, but no more than a few waves' worth.
  const int64_t cap = 16384;
  if (gx * gy > cap) gy = cap / gx > 0 ? cap / gx : 1;
  return {dim3((unsigned)gx, (unsigned)gy, 1), dim3((unsigned)threads, 1, 1)};
}

}  // namespace lw::cuda
