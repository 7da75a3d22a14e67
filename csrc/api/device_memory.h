// device_memory.h -- buffers in a handle's memory (host for CPU handles, device
// memory for CUDA handles) and copies between them and the host, for the
// objects of the C API that own memory (networks).
#pragma once

#include <cstddef>

#include "layerwise/layerwise.h"

namespace lw {
namespace api {

// A zero-filled buffer on `device`; move-only, freed on destruction.
// Throws api::Failure(ALLOC_FAILED) when the memory cannot be had.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(lwDevice_t device, size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer &&other) noexcept;
  DeviceBuffer &operator=(DeviceBuffer &&other) noexcept;
  DeviceBuffer(const DeviceBuffer &) = delete;
  DeviceBuffer &operator=(const DeviceBuffer &) = delete;

  void *data() const { return ptr_; }
  // Sets every byte to 0 in place (the pointer stays the same; blocking on CUDA).
  void zero();
  size_t bytes() const { return bytes_; }

 private:
  void release() noexcept;
  lwDevice_t device_ = LW_DEVICE_CPU;
  void *ptr_ = nullptr;
  size_t bytes_ = 0;
};

// Blocking copies between host memory and memory of `device` (plain memcpy on CPU).
void copy_to_host(lwDevice_t device, void *host_dst, const void *src, size_t bytes);
void copy_from_host(lwDevice_t device, void *dst, const void *host_src, size_t bytes);

}  // namespace api
}  // namespace lw
