// gemm_kernels.cuh -- pieces shared by the float32 GEMM kernels (gemm.cu: the
// SIMT kernel; gemm_tf32.cu: the opt-in tensor-core kernel): the parameter
// block, the fused epilogue, and the global -> register -> shared staging of
// operand slabs (index math in tiling.h).
#pragma once

#include <cstdint>

#include "../common/activation_math.h"
#include "cuda_common.h"
#include "tiling.h"

namespace lw::cuda::detail {

using tiling::Coord;

enum Layout : int { kNT = 0, kNN = 1, kTN = 2 };

template <typename T>
struct GemmParams {
  int64_t M, N, K;
  const T *A; int64_t lda;  // NT, NN: A (M, K); TN: A stored (K, M)
  const T *B; int64_t ldb;  // NT: B stored (N, K); NN, TN: B (K, N)
  T *C; int64_t ldc;        // (M, N)
  const T *bias;            // (N) or null
  lwActivationMode_t act;
  double alpha, beta;
  bool a_vec, b_vec, c_vec;  // 16-byte vector access allowed (tiling::can_vec4)
};

// Epilogue for one element: alpha * act(acc + bias) + beta * c.
template <typename T>
__device__ __forceinline__ T epilogue(const GemmParams<T> &p, T acc, int64_t n, const T *c) {
  T v = p.bias ? acc + p.bias[n] : acc;
  v = activate(p.act, v);
  return blend(p.alpha, p.beta, v, c);
}

// Global -> registers: LOADS float4 of an operand slab starting at (r0, k0).
// K-contiguous: element (r, k) at ptr[r * ld + k], r < R_total.
// MN-contiguous: element (k, r) at ptr[k * ld + r].
// Out-of-range elements read as 0 so they add nothing to the products.
template <bool KCONTIG, int R, int BK, int NT, int LOADS>
__device__ __forceinline__ void load_slab(float4 (&reg)[LOADS], const float *__restrict__ ptr,
                                          int64_t ld, int64_t R_total, int64_t K, int64_t r0,
                                          int64_t k0, bool vec, int tid) {
#pragma unroll
  for (int l = 0; l < LOADS; ++l) {
    const int v = tid + l * NT;
    float4 val = make_float4(0.f, 0.f, 0.f, 0.f);
    if (v < R * BK / 4) {
      if (KCONTIG) {
        const Coord c = tiling::kcontig_vec(v, BK);
        const int64_t r = r0 + c.major, k = k0 + c.minor;
        if (r < R_total && k < K) {
          const float *src = ptr + r * ld + k;
          if (vec && k + 3 < K) {
            val = __ldg(reinterpret_cast<const float4 *>(src));
          } else {
            val.x = __ldg(src);
            val.y = k + 1 < K ? __ldg(src + 1) : 0.f;
            val.z = k + 2 < K ? __ldg(src + 2) : 0.f;
            val.w = k + 3 < K ? __ldg(src + 3) : 0.f;
          }
        }
      } else {
        const Coord c = tiling::mncontig_vec(v, R);
        const int64_t k = k0 + c.major, r = r0 + c.minor;
        if (k < K && r < R_total) {
          const float *src = ptr + k * ld + r;
          if (vec && r + 3 < R_total) {
            val = __ldg(reinterpret_cast<const float4 *>(src));
          } else {
            val.x = __ldg(src);
            val.y = r + 1 < R_total ? __ldg(src + 1) : 0.f;
            val.z = r + 2 < R_total ? __ldg(src + 2) : 0.f;
            val.w = r + 3 < R_total ? __ldg(src + 3) : 0.f;
          }
        }
      }
    }
    reg[l] = val;
  }
}

// Registers -> shared slab S (BK, LDS), k-major. K-contiguous vectors are
// transposed on the way (4 scalar stores); MN-contiguous ones go in as float4.
template <bool KCONTIG, int R, int BK, int NT, int LOADS, int LDS>
__device__ __forceinline__ void store_slab(float (*S)[LDS], const float4 (&reg)[LOADS], int tid) {
#pragma unroll
  for (int l = 0; l < LOADS; ++l) {
    const int v = tid + l * NT;
    if (v < R * BK / 4) {
      if (KCONTIG) {
        const Coord c = tiling::kcontig_vec(v, BK);
        S[c.minor + 0][c.major] = reg[l].x;
        S[c.minor + 1][c.major] = reg[l].y;
        S[c.minor + 2][c.major] = reg[l].z;
        S[c.minor + 3][c.major] = reg[l].w;
      } else {
        const Coord c = tiling::mncontig_vec(v, R);
        *reinterpret_cast<float4 *>(&S[c.major][c.minor]) = reg[l];
      }
    }
  }
}

// The opt-in TF32 tensor-core path (gemm_tf32.cu): enabled when the environment
// has LAYERWISE_CUDA_TF32=1 (read at every call) and the device is sm_80 or newer.
bool tf32_enabled(int device);
lwStatus_t sgemm_tf32(const CudaContext &ctx, int layout, const GemmParams<float> &p,
                      const char *what);

}  // namespace lw::cuda::detail
