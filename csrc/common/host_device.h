// host_device.h -- LW_HD marks a scalar formula of csrc/common/*_math.h that both
// the CPU kernels and the CUDA kernels call: __host__ __device__ under nvcc,
// a plain inline function elsewhere.
#pragma once

#if defined(__CUDACC__)
#define LW_HD __host__ __device__ __forceinline__
#else
#define LW_HD inline
#endif
