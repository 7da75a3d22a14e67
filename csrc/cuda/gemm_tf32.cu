// gemm_tf32.cu -- OPTIONAL float32 GEMM on TF32 tensor cores (WMMA m16n16k8),
// off by default. Enabled per call when the environment has
// LAYERWISE_CUDA_TF32=1 and the handle's GPU is sm_80 (Ampere) or newer; on
// older GPUs the variable is ignored and the exact SIMT kernel (gemm.cu) runs.
//
// Accuracy: TF32 keeps 10 of float32's 23 mantissa bits for the products'
// inputs (relative rounding 2^-11 ~ 4.9e-4 per input); products are
// accumulated in float32. A K-term dot product of O(1) values therefore has an
// absolute error of roughly 1e-3 * sqrt(K) (about 3e-2 for K = 784), against
// ~1e-6 * sqrt(K) for the float32 kernel -- the same trade cuBLAS makes with
// CUBLAS_TF32_TENSOR_OP_MATH / torch.backends.cuda.matmul.allow_tf32. The
// epilogue (bias, activation, alpha/beta) runs in float32 as in gemm.cu.
//
// Structure: the 128x128 block tile and the double-buffered slab staging of
// gemm.cu (gemm_kernels.cuh, BK = 16), 8 warps in a 2x4 grid each owning 64x32
// outputs as 4x2 accumulator fragments; shared slabs are k-major, i.e. A is
// read as a col_major (M x K) fragment and B as a row_major (K x N) fragment.
// The epilogue passes each fragment through a per-warp 16x16 shared buffer
// (fragment layouts are opaque) and applies the fused epilogue with bounds checks.
#include <cstdlib>
#include <cstring>
#include <mutex>

#include <mma.h>

#include "gemm_kernels.cuh"

namespace lw::cuda::detail {
namespace {

constexpr tiling::TileConfig kCfg = tiling::kTf32Tile;
constexpr int BM = kCfg.BM, BN = kCfg.BN, NT = kCfg.threads();

// Loads a slab of an operand whose contiguous dimension is known only at run
// time: one kernel serves all three layouts (a uniform branch; fewer
// instantiations keep the build short for a path that is off by default).
template <int R, int BK, int LOADS>
__device__ __forceinline__ void load_any(bool kcontig, float4 (&reg)[LOADS], const float *ptr,
                                         int64_t ld, int64_t R_total, int64_t K, int64_t r0,
                                         int64_t k0, bool vec, int tid) {
  if (kcontig) load_slab<true, R, BK, NT, LOADS>(reg, ptr, ld, R_total, K, r0, k0, vec, tid);
  else load_slab<false, R, BK, NT, LOADS>(reg, ptr, ld, R_total, K, r0, k0, vec, tid);
}
template <int R, int BK, int LOADS, int LDS>
__device__ __forceinline__ void store_any(bool kcontig, float (*S)[LDS], const float4 (&reg)[LOADS],
                                          int tid) {
  if (kcontig) store_slab<true, R, BK, NT, LOADS, LDS>(S, reg, tid);
  else store_slab<false, R, BK, NT, LOADS, LDS>(S, reg, tid);
}

__global__ void __launch_bounds__(NT) sgemm_tf32_kernel(const GemmParams<float> p, int layout) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  namespace wmma = nvcuda::wmma;
  constexpr int BK = kCfg.BK;
  constexpr int LDA_S = BM + 4, LDB_S = BN + 4;  // multiples of 4 floats, as WMMA needs
  constexpr int FRAG_M = tiling::kTf32WarpM / 16, FRAG_N = tiling::kTf32WarpN / 16;
  constexpr int A_LOADS = kCfg.loads(BM), B_LOADS = kCfg.loads(BN);
  const bool a_kc = layout != kTN, b_kc = layout == kNT;
  // 32-byte alignment: wmma::load_matrix_sync needs 256-bit aligned pointers. Every
  // fragment pointer below is base + (k * LD + 16 * j) floats with k in {0, 8} and
  // LD = 132: 8 * 132 * 4 = 4224 bytes = 132 * 32, and 16 floats = 64 bytes.
  __shared__ __align__(32) float As[2][BK][LDA_S];
  __shared__ __align__(32) float Bs[2][BK][LDB_S];
  __shared__ __align__(32) float stage[NT / 32][16 * 16];

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int wm = warp / tiling::kTf32WarpsN, wn = warp % tiling::kTf32WarpsN;
  const int64_t m0 = (int64_t)blockIdx.x * BM, n0 = (int64_t)blockIdx.y * BN;

  float4 ra[A_LOADS], rb[B_LOADS];
  load_any<BM, BK, A_LOADS>(a_kc, ra, p.A, p.lda, p.M, p.K, m0, 0, p.a_vec, tid);
  load_any<BN, BK, B_LOADS>(b_kc, rb, p.B, p.ldb, p.N, p.K, n0, 0, p.b_vec, tid);
  store_any<BM, BK, A_LOADS, LDA_S>(a_kc, As[0], ra, tid);
  store_any<BN, BK, B_LOADS, LDB_S>(b_kc, Bs[0], rb, tid);
  __syncthreads();

  wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc[FRAG_M][FRAG_N];
#pragma unroll
  for (int i = 0; i < FRAG_M; ++i)
#pragma unroll
    for (int j = 0; j < FRAG_N; ++j) wmma::fill_fragment(acc[i][j], 0.f);

  int cur = 0;
  for (int64_t k0 = 0; k0 < p.K; k0 += BK) {
    const bool more = k0 + BK < p.K;
    if (more) {
      load_any<BM, BK, A_LOADS>(a_kc, ra, p.A, p.lda, p.M, p.K, m0, k0 + BK, p.a_vec, tid);
      load_any<BN, BK, B_LOADS>(b_kc, rb, p.B, p.ldb, p.N, p.K, n0, k0 + BK, p.b_vec, tid);
    }
#pragma unroll
    for (int kk = 0; kk < BK; kk += 8) {
      wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::col_major> a[FRAG_M];
      wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> b[FRAG_N];
#pragma unroll
      for (int i = 0; i < FRAG_M; ++i) {
        wmma::load_matrix_sync(a[i], &As[cur][kk][wm * tiling::kTf32WarpM + i * 16], LDA_S);
#pragma unroll
        for (int t = 0; t < a[i].num_elements; ++t) a[i].x[t] = wmma::__float_to_tf32(a[i].x[t]);
      }
#pragma unroll
      for (int j = 0; j < FRAG_N; ++j) {
        wmma::load_matrix_sync(b[j], &Bs[cur][kk][wn * tiling::kTf32WarpN + j * 16], LDB_S);
#pragma unroll
        for (int t = 0; t < b[j].num_elements; ++t) b[j].x[t] = wmma::__float_to_tf32(b[j].x[t]);
      }
#pragma unroll
      for (int i = 0; i < FRAG_M; ++i)
#pragma unroll
        for (int j = 0; j < FRAG_N; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
    }
    if (more) {  // the other buffer's last readers finished before the previous barrier
      store_any<BM, BK, A_LOADS, LDA_S>(a_kc, As[cur ^ 1], ra, tid);
      store_any<BN, BK, B_LOADS, LDB_S>(b_kc, Bs[cur ^ 1], rb, tid);
    }
    __syncthreads();
    cur ^= 1;
  }

  float *st = stage[warp];
#pragma unroll
  for (int i = 0; i < FRAG_M; ++i)
#pragma unroll
    for (int j = 0; j < FRAG_N; ++j) {
      wmma::store_matrix_sync(st, acc[i][j], 16, wmma::mem_row_major);
      __syncwarp();
      const int64_t mb = m0 + wm * tiling::kTf32WarpM + i * 16;
      const int64_t nb = n0 + wn * tiling::kTf32WarpN + j * 16;
#pragma unroll
      for (int t = 0; t < 8; ++t) {  // 256 values, 8 per lane; half-warps cover a row
        const int e = lane + 32 * t, r = e / 16, c = e % 16;
        const int64_t m = mb + r, n = nb + c;
        if (m < p.M && n < p.N) {
          float *dst = p.C + m * p.ldc + n;
          *dst = epilogue(p, st[e], n, dst);
        }
      }
      __syncwarp();  // the buffer is rewritten by the next fragment
    }
#endif
}

int compute_major(int device) {
  static std::mutex mu;
  static int cache[64] = {0};
  if (device < 0 || device >= 64) return 0;
  std::lock_guard<std::mutex> lock(mu);
  if (cache[device] == 0) {
    int v = 0;
    if (cudaDeviceGetAttribute(&v, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) {
      (void)cudaGetLastError();
      v = -1;
    }
    cache[device] = v;
  }
  return cache[device];
}

}  // namespace

bool tf32_enabled(int device) {
  const char *v = std::getenv("LAYERWISE_CUDA_TF32");
  if (!v || std::strcmp(v, "1") != 0) return false;
  return compute_major(device) >= 8;
}

lwStatus_t sgemm_tf32(const CudaContext &ctx, int layout, const GemmParams<float> &p,
                      const char *what) {
  const int64_t gx = tiling::ceil_div(p.M, BM), gy = tiling::ceil_div(p.N, BN);
  if (gx > 2147483647LL || gy > 65535)
    return fail(LW_STATUS_NOT_SUPPORTED, std::string(what) + ": matrix too large for one launch");
  const dim3 grid((unsigned)gx, (unsigned)gy);
  cudaStream_t s = stream_of(ctx);
  sgemm_tf32_kernel<<<grid, NT, 0, s>>>(p, layout);
  return check_launch(what);
}

}  // namespace lw::cuda::detail
