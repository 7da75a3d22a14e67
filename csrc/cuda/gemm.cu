// gemm.cu -- the dense-layer primitives on CUDA:
//   forward        y  (n, out) = act(x (n, in) w^T + b)   "NT": both operands K-contiguous
//   backward data  dx (n, in)  = dy (n, out) w (out, in)  "NN": A K-contiguous, B N-contiguous
//   backward wts   dw (out,in) = dy^T x                   "TN": A M-contiguous, B N-contiguous
// each with the fused epilogue  C = alpha * act(acc + bias) + beta * C  (C never
// read when beta == 0), and db = alpha * column sums of dy + beta * db.
//
// float32: a shared-memory tiled kernel with register blocking (8x8 or 4x4
// outputs per thread), 16-byte global loads where pointers and leading dims
// allow them (a scalar, bounds-checked path otherwise and at the edges of M, N
// and K), and double-buffered tiles (the next K slab is fetched into registers
// while the current one is multiplied). The index math lives in tiling.h.
// float64: a simpler 32x32-tile kernel with 2x2 outputs per thread.
// Optional TF32 tensor cores for float32 (LAYERWISE_CUDA_TF32=1): gemm_tf32.cu.
#include <cstdint>

#include "gemm_kernels.cuh"

namespace lw::cuda {
namespace {

using namespace detail;
using tiling::TileConfig;

// Min blocks per SM: 2 for the 256-thread tile caps it at 128 registers, so two
// blocks (one computing while the other waits on its barrier) fit on an SM.
template <int L, int BM, int BN, int BK, int TM, int TN>
__global__ void __launch_bounds__((BM / TM) * (BN / TN), (BM / TM) * (BN / TN) >= 256 ? 2 : 4)
    sgemm_kernel(const GemmParams<float> p) {
  constexpr int TY = BM / TM, TX = BN / TN, NT = TX * TY;
  constexpr TileConfig cfg{BM, BN, BK, TM, TN};
  constexpr int A_LOADS = cfg.loads(BM), B_LOADS = cfg.loads(BN);
  constexpr bool A_KCONTIG = L != kTN, B_KCONTIG = L == kNT;
  // +4 floats per row: keeps rows 16-byte aligned for float4 access and moves the
  // transposing stores of neighbouring k onto different banks.
  constexpr int LDA_S = BM + 4, LDB_S = BN + 4;
  static_assert(TM % 4 == 0 && TN % 4 == 0 && BK % 4 == 0, "float4 granularity");
  static_assert(BM % 4 == 0 && BN % 4 == 0, "tile shape");

  __shared__ __align__(16) float As[2][BK][LDA_S];
  __shared__ __align__(16) float Bs[2][BK][LDB_S];

  const int tid = threadIdx.x;
  const int tx = tid % TX, ty = tid / TX;
  const int64_t m0 = (int64_t)blockIdx.x * BM, n0 = (int64_t)blockIdx.y * BN;

  float4 ra[A_LOADS], rb[B_LOADS];
  load_slab<A_KCONTIG, BM, BK, NT, A_LOADS>(ra, p.A, p.lda, p.M, p.K, m0, 0, p.a_vec, tid);
  load_slab<B_KCONTIG, BN, BK, NT, B_LOADS>(rb, p.B, p.ldb, p.N, p.K, n0, 0, p.b_vec, tid);
  store_slab<A_KCONTIG, BM, BK, NT, A_LOADS, LDA_S>(As[0], ra, tid);
  store_slab<B_KCONTIG, BN, BK, NT, B_LOADS, LDB_S>(Bs[0], rb, tid);
  __syncthreads();

  float acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;

  int cur = 0;
  for (int64_t k0 = 0; k0 < p.K; k0 += BK) {
    const bool more = k0 + BK < p.K;
    if (more) {  // fetch the next slab while this one is multiplied
      load_slab<A_KCONTIG, BM, BK, NT, A_LOADS>(ra, p.A, p.lda, p.M, p.K, m0, k0 + BK, p.a_vec, tid);
      load_slab<B_KCONTIG, BN, BK, NT, B_LOADS>(rb, p.B, p.ldb, p.N, p.K, n0, k0 + BK, p.b_vec, tid);
    }
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      float a[TM], b[TN];
#pragma unroll
      for (int g = 0; g < TM / 4; ++g) {
        const float4 t = *reinterpret_cast<const float4 *>(&As[cur][kk][g * TY * 4 + ty * 4]);
        a[g * 4 + 0] = t.x; a[g * 4 + 1] = t.y; a[g * 4 + 2] = t.z; a[g * 4 + 3] = t.w;
      }
#pragma unroll
      for (int g = 0; g < TN / 4; ++g) {
        const float4 t = *reinterpret_cast<const float4 *>(&Bs[cur][kk][g * TX * 4 + tx * 4]);
        b[g * 4 + 0] = t.x; b[g * 4 + 1] = t.y; b[g * 4 + 2] = t.z; b[g * 4 + 3] = t.w;
      }
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    if (more) {
      // The other buffer was last read in the previous iteration, which every
      // thread finished before the barrier that ended it.
      store_slab<A_KCONTIG, BM, BK, NT, A_LOADS, LDA_S>(As[cur ^ 1], ra, tid);
      store_slab<B_KCONTIG, BN, BK, NT, B_LOADS, LDB_S>(Bs[cur ^ 1], rb, tid);
    }
    __syncthreads();
    cur ^= 1;
  }

  // Epilogue: each thread owns rows owned_offset(i, ty, TY), columns in groups of 4.
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int64_t m = m0 + tiling::owned_offset(i, ty, TY);
    if (m >= p.M) continue;
    float *crow = p.C + m * p.ldc;
#pragma unroll
    for (int g = 0; g < TN / 4; ++g) {
      const int64_t n = n0 + tiling::owned_offset(g * 4, tx, TX);
      if (n >= p.N) continue;
      if (p.c_vec && n + 3 < p.N) {
        float4 *dst = reinterpret_cast<float4 *>(crow + n);
        float4 old = make_float4(0.f, 0.f, 0.f, 0.f);
        if (p.beta != 0.0) old = *dst;
        float4 r;
        r.x = epilogue(p, acc[i][g * 4 + 0], n + 0, &old.x);
        r.y = epilogue(p, acc[i][g * 4 + 1], n + 1, &old.y);
        r.z = epilogue(p, acc[i][g * 4 + 2], n + 2, &old.z);
        r.w = epilogue(p, acc[i][g * 4 + 3], n + 3, &old.w);
        *dst = r;
      } else {
#pragma unroll
        for (int j = 0; j < 4; ++j)
          if (n + j < p.N) crow[n + j] = epilogue(p, acc[i][g * 4 + j], n + j, crow + n + j);
      }
    }
  }
}

template <int L, int BM, int BN, int BK, int TM, int TN>
lwStatus_t launch_sgemm(const GemmParams<float> &p, cudaStream_t s, const char *what) {
  const int64_t gx = tiling::ceil_div(p.M, BM), gy = tiling::ceil_div(p.N, BN);
  if (gx > 2147483647LL || gy > 65535)
    return fail(LW_STATUS_NOT_SUPPORTED, std::string(what) + ": matrix too large for one launch");
  sgemm_kernel<L, BM, BN, BK, TM, TN>
      <<<dim3((unsigned)gx, (unsigned)gy), dim3((BM / TM) * (BN / TN)), 0, s>>>(p);
  return check_launch(what);
}

template <int L>
lwStatus_t sgemm(const CudaContext &ctx, const GemmParams<float> &p, const char *what) {
  using tiling::kBigTile;
  using tiling::kSmallTile;
  if (tf32_enabled(ctx.device)) return sgemm_tf32(ctx, L, p, what);  // opt-in, gemm_tf32.cu
  if (tiling::use_big_tile(p.M, p.N, sm_count(ctx.device)))
    return launch_sgemm<L, kBigTile.BM, kBigTile.BN, kBigTile.BK, kBigTile.TM, kBigTile.TN>(
        p, stream_of(ctx), what);
  return launch_sgemm<L, kSmallTile.BM, kSmallTile.BN, kSmallTile.BK, kSmallTile.TM, kSmallTile.TN>(
      p, stream_of(ctx), what);
}

// ---- float64 ------------------------------------------------------------------
// 32x32 tile of C, K in slabs of 16, 16x16 threads with 2x2 outputs each
// (rows ty and ty+16, columns tx and tx+16). The layout is a runtime argument:
// one instantiation serves all three products.
constexpr int kDT = 32, kDK = 16;

__global__ void __launch_bounds__(256) dgemm_kernel(const GemmParams<double> p, int layout) {
  __shared__ double As[kDK][kDT + 1];  // [k][m]
  __shared__ double Bs[kDK][kDT + 1];  // [k][n]
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int64_t m0 = (int64_t)blockIdx.x * kDT, n0 = (int64_t)blockIdx.y * kDT;
  const bool a_kcontig = layout != kTN, b_kcontig = layout == kNT;
  double acc[2][2] = {{0.0, 0.0}, {0.0, 0.0}};

  for (int64_t k0 = 0; k0 < p.K; k0 += kDK) {
    // 512 elements per operand slab, 2 per thread; consecutive threads walk the
    // operand's contiguous dimension so the loads coalesce.
#pragma unroll
    for (int l = 0; l < 2; ++l) {
      const int e = tid + l * 256;
      int km, mm;
      if (a_kcontig) { km = e % kDK; mm = e / kDK; } else { mm = e % kDT; km = e / kDT; }
      const int64_t m = m0 + mm, k = k0 + km;
      double v = 0.0;
      if (m < p.M && k < p.K) v = a_kcontig ? p.A[m * p.lda + k] : p.A[k * p.lda + m];
      As[km][mm] = v;
      int kn, nn;
      if (b_kcontig) { kn = e % kDK; nn = e / kDK; } else { nn = e % kDT; kn = e / kDT; }
      const int64_t n = n0 + nn, k2 = k0 + kn;
      double w = 0.0;
      if (n < p.N && k2 < p.K) w = b_kcontig ? p.B[n * p.ldb + k2] : p.B[k2 * p.ldb + n];
      Bs[kn][nn] = w;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kDK; ++kk) {
      const double a0 = As[kk][ty], a1 = As[kk][ty + 16];
      const double b0 = Bs[kk][tx], b1 = Bs[kk][tx + 16];
      acc[0][0] = fma(a0, b0, acc[0][0]);
      acc[0][1] = fma(a0, b1, acc[0][1]);
      acc[1][0] = fma(a1, b0, acc[1][0]);
      acc[1][1] = fma(a1, b1, acc[1][1]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int64_t m = m0 + ty + 16 * i;
    if (m >= p.M) continue;
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const int64_t n = n0 + tx + 16 * j;
      if (n < p.N) p.C[m * p.ldc + n] = epilogue(p, acc[i][j], n, p.C + m * p.ldc + n);
    }
  }
}

lwStatus_t dgemm(const CudaContext &ctx, const GemmParams<double> &p, int layout, const char *what) {
  const int64_t gx = tiling::ceil_div(p.M, kDT), gy = tiling::ceil_div(p.N, kDT);
  if (gx > 2147483647LL || gy > 65535)
    return fail(LW_STATUS_NOT_SUPPORTED, std::string(what) + ": matrix too large for one launch");
  dgemm_kernel<<<dim3((unsigned)gx, (unsigned)gy), dim3(256), 0, stream_of(ctx)>>>(p, layout);
  return check_launch(what);
}

// Builds the parameters and picks the kernel for one of the three products.
template <typename T>
GemmParams<T> make_params(int64_t M, int64_t N, int64_t K, const void *A, int64_t lda,
                          const void *B, int64_t ldb, void *C, int64_t ldc, const void *bias,
                          lwActivationMode_t act, double alpha, double beta) {
  GemmParams<T> p;
  p.M = M; p.N = N; p.K = K;
  p.A = static_cast<const T *>(A); p.lda = lda;
  p.B = static_cast<const T *>(B); p.ldb = ldb;
  p.C = static_cast<T *>(C); p.ldc = ldc;
  p.bias = static_cast<const T *>(bias);
  p.act = act;
  p.alpha = alpha; p.beta = beta;
  p.a_vec = tiling::can_vec4(reinterpret_cast<uintptr_t>(A), lda, sizeof(T));
  p.b_vec = tiling::can_vec4(reinterpret_cast<uintptr_t>(B), ldb, sizeof(T));
  p.c_vec = tiling::can_vec4(reinterpret_cast<uintptr_t>(C), ldc, sizeof(T));
  return p;
}

template <int L>
lwStatus_t gemm(const CudaContext &ctx, DType dt, int64_t M, int64_t N, int64_t K, const void *A,
                int64_t lda, const void *B, int64_t ldb, void *C, int64_t ldc, const void *bias,
                lwActivationMode_t act, double alpha, double beta, const char *what) {
  if (M == 0 || N == 0) return LW_STATUS_SUCCESS;
  if (dt == DType::F32)
    return sgemm<L>(ctx, make_params<float>(M, N, K, A, lda, B, ldb, C, ldc, bias, act, alpha, beta),
                    what);
  return dgemm(ctx, make_params<double>(M, N, K, A, lda, B, ldb, C, ldc, bias, act, alpha, beta), L,
               what);
}

// ---- db: column sums -------------------------------------------------------------
// db[j] = alpha * sum_i dy[i, j] + beta * db[j], summed in double like the CPU
// backend. A block of 32 x 32 threads owns 32 columns: thread (x, y) sums rows
// y, y + 32, ... of column x, then the 32 partial sums are added in a fixed
// order, so the result does not depend on timing (no atomics).
template <typename T>
__global__ void __launch_bounds__(1024)
    column_sums_kernel(const T *__restrict__ dy, int64_t ld, int64_t n, int64_t cols, T *db,
                       double alpha, double beta) {
  __shared__ double part[32][33];
  const int x = threadIdx.x, y = threadIdx.y;
  const int64_t j = (int64_t)blockIdx.x * 32 + x;
  double s = 0.0;
  if (j < cols)
    for (int64_t i = y; i < n; i += 32) s += (double)dy[i * ld + j];
  part[y][x] = s;
  __syncthreads();
  if (y == 0 && j < cols) {
    double t = 0.0;
    for (int r = 0; r < 32; ++r) t += part[r][x];
    const double v = alpha * t;
    db[j] = static_cast<T>(beta == 0.0 ? v : v + beta * (double)db[j]);
  }
}

template <typename T>
lwStatus_t column_sums(const CudaContext &ctx, const LinearBackwardWeightsArgs &a) {
  const int64_t blocks = tiling::ceil_div(a.out, 32);
  if (blocks > 2147483647LL) return fail(LW_STATUS_NOT_SUPPORTED, "lwLinearBackwardWeights: db too long");
  column_sums_kernel<T><<<dim3((unsigned)blocks), dim3(32, 32), 0, stream_of(ctx)>>>(
      static_cast<const T *>(a.dy), a.lddy, a.n, a.out, static_cast<T *>(a.db), a.alpha, a.beta);
  return check_launch("lwLinearBackwardWeights (db)");
}

}  // namespace

lwStatus_t linear_forward(const CudaContext &ctx, const LinearForwardArgs &a) {
  LW_CUDA_DEVICE_GUARD(ctx, "lwLinearForward");
  // (n, out) = (n, in) (out, in)^T
  return gemm<kNT>(ctx, a.dtype, a.n, a.out, a.in, a.x, a.ldx, a.w, a.ldw, a.y, a.ldy, a.b, a.act,
                   a.alpha, a.beta, "lwLinearForward");
}

lwStatus_t linear_backward_data(const CudaContext &ctx, const LinearBackwardDataArgs &a) {
  LW_CUDA_DEVICE_GUARD(ctx, "lwLinearBackwardData");
  // (n, in) = (n, out) (out, in)
  return gemm<kNN>(ctx, a.dtype, a.n, a.in, a.out, a.dy, a.lddy, a.w, a.ldw, a.dx, a.lddx, nullptr,
                   LW_ACTIVATION_IDENTITY, a.alpha, a.beta, "lwLinearBackwardData");
}

lwStatus_t linear_backward_weights(const CudaContext &ctx, const LinearBackwardWeightsArgs &a) {
  LW_CUDA_DEVICE_GUARD(ctx, "lwLinearBackwardWeights");
  // (out, in) = (n, out)^T (n, in); K = n may be 0 (then dw = beta * dw).
  lwStatus_t st = gemm<kTN>(ctx, a.dtype, a.out, a.in, a.n, a.dy, a.lddy, a.x, a.ldx, a.dw, a.lddw,
                            nullptr, LW_ACTIVATION_IDENTITY, a.alpha, a.beta,
                            "lwLinearBackwardWeights");
  if (st != LW_STATUS_SUCCESS || !a.db) return st;
  return a.dtype == DType::F32 ? column_sums<float>(ctx, a) : column_sums<double>(ctx, a);
}

}  // namespace lw::cuda
