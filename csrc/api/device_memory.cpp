// device_memory.cpp -- see device_memory.h. The CUDA branch uses the runtime
// directly; the copies synchronize, so work queued on the handle's stream
// before them has finished reading or writing the memory.
#include "device_memory.h"

#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>

#include "guard.h"

#ifdef LAYERWISE_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace lw {
namespace api {

#ifdef LAYERWISE_WITH_CUDA
namespace {
void cuda_check(cudaError_t err, const char *what) {
  if (err != cudaSuccess)
    failure(err == cudaErrorMemoryAllocation ? LW_STATUS_ALLOC_FAILED : LW_STATUS_EXECUTION_FAILED,
            std::string(what) + ": " + cudaGetErrorString(err));
}
}  // namespace
#endif

DeviceBuffer::DeviceBuffer(lwDevice_t device, size_t bytes) : device_(device), bytes_(bytes) {
  if (bytes == 0) return;
  if (device == LW_DEVICE_CPU) {
    ptr_ = std::calloc(bytes, 1);
    if (!ptr_)
      failure(LW_STATUS_ALLOC_FAILED, "out of host memory (" + std::to_string(bytes) + " bytes)");
    return;
  }
#ifdef LAYERWISE_WITH_CUDA
  cuda_check(cudaMalloc(&ptr_, bytes), "cudaMalloc");
  const cudaError_t err = cudaMemset(ptr_, 0, bytes);
  if (err != cudaSuccess) {
    (void)cudaFree(ptr_);
    ptr_ = nullptr;
    cuda_check(err, "cudaMemset");
  }
#else
  failure(LW_STATUS_NOT_SUPPORTED, "device memory: this build has no CUDA backend");
#endif
}

void DeviceBuffer::release() noexcept {
  if (!ptr_) return;
  if (device_ == LW_DEVICE_CPU) {
    std::free(ptr_);
  } else {
#ifdef LAYERWISE_WITH_CUDA
    (void)cudaFree(ptr_);  // synchronizes: queued kernels finish first
#endif
  }
  ptr_ = nullptr;
  bytes_ = 0;
}

DeviceBuffer::~DeviceBuffer() { release(); }

void DeviceBuffer::zero() {
  if (!ptr_) return;
  if (device_ == LW_DEVICE_CPU) {
    std::memset(ptr_, 0, bytes_);
    return;
  }
#ifdef LAYERWISE_WITH_CUDA
  cuda_check(cudaMemset(ptr_, 0, bytes_), "cudaMemset");
#endif
}

DeviceBuffer::DeviceBuffer(DeviceBuffer &&other) noexcept
    : device_(other.device_), ptr_(std::exchange(other.ptr_, nullptr)),
      bytes_(std::exchange(other.bytes_, 0)) {}

DeviceBuffer &DeviceBuffer::operator=(DeviceBuffer &&other) noexcept {
  if (this != &other) {
    release();
    device_ = other.device_;
    ptr_ = std::exchange(other.ptr_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

void copy_to_host(lwDevice_t device, void *host_dst, const void *src, size_t bytes) {
  if (bytes == 0) return;
  if (device == LW_DEVICE_CPU) {
    std::memcpy(host_dst, src, bytes);
    return;
  }
#ifdef LAYERWISE_WITH_CUDA
  // Kernels may still be queued on the handle's (possibly non-blocking) stream.
  cuda_check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  cuda_check(cudaMemcpy(host_dst, src, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy to host");
#else
  failure(LW_STATUS_NOT_SUPPORTED, "device memory: this build has no CUDA backend");
#endif
}

void copy_from_host(lwDevice_t device, void *dst, const void *host_src, size_t bytes) {
  if (bytes == 0) return;
  if (device == LW_DEVICE_CPU) {
    std::memcpy(dst, host_src, bytes);
    return;
  }
#ifdef LAYERWISE_WITH_CUDA
  cuda_check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  cuda_check(cudaMemcpy(dst, host_src, bytes, cudaMemcpyHostToDevice), "cudaMemcpy from host");
#else
  failure(LW_STATUS_NOT_SUPPORTED, "device memory: this build has no CUDA backend");
#endif
}

}  // namespace api
}  // namespace lw
