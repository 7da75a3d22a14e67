// reduce.cuh -- deterministic reductions over a group of G threads (G = 32: one
// warp; G = 256: the whole block). The xor butterfly leaves the same bits in
// every lane (each step adds the same two values, and + is commutative), and
// the cross-warp step adds the warp results in a fixed order, so results never
// depend on scheduling.
#pragma once

#include <cuda_runtime.h>

namespace lw::cuda {

struct SumOp {
  template <typename T>
  __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};
struct MaxOp {
  template <typename T>
  __device__ __forceinline__ T operator()(T a, T b) const { return b > a ? b : a; }
};

// All G threads of the group must call this (G == 256 also syncs the block).
// smem: at least 8 values, shared by the block.
template <int G, typename T, typename F>
__device__ __forceinline__ T group_reduce(T v, F f, T *smem) {
  static_assert(G == 32 || G == 256, "groups are one warp or one 256-thread block");
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = f(v, __shfl_xor_sync(0xffffffffu, v, o));
  if (G == 32) return v;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();  // the previous call's readers are done with smem
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  T t = smem[0];
#pragma unroll
  for (int w = 1; w < G / 32; ++w) t = f(t, smem[w]);
  return t;
}

}  // namespace lw::cuda
