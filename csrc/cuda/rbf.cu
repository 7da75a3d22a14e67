// rbf.cu -- radial basis function units on CUDA (see lwRbfForward): the squared
// distances come from the dense-layer GEMM (-2 x c^T) plus the row norms, then
// one elementwise pass clamps them at 0 and applies the exponential. The
// backward pass forms G = dL/dD = -gamma * y * dy and reuses the backward GEMMs
// for G c (dx) and G^T x (dcenters, with colsum(G) as the GEMM's bias gradient).
// Scratch memory is taken from the stream-ordered allocator per call.
#include "cuda_common.h"
#include "map2d.cuh"

namespace lw::cuda {
namespace {

// out[i] = sum_k a[i, k]^2 in double: one warp per row.
template <typename T>
__global__ void __launch_bounds__(256) row_sq_norms_kernel(const T *a, int64_t lda, int64_t rows,
                                                           int64_t cols, double *out) {
  const int64_t warps = (int64_t)gridDim.x * (blockDim.x / 32);
  const int lane = threadIdx.x % 32;
  for (int64_t r = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; r < rows; r += warps) {
    const T *row = a + r * lda;
    double s = 0.0;
    for (int64_t k = lane; k < cols; k += 32) s += (double)row[k] * (double)row[k];
    for (int o = 16; o > 0; o /= 2) s += __shfl_down_sync(0xffffffffu, s, o);
    if (lane == 0) out[r] = s;
  }
}

template <typename T>
lwStatus_t row_sq_norms(const CudaContext &ctx, const T *a, int64_t lda, int64_t rows, int64_t cols,
                        double *out) {
  if (rows == 0) return LW_STATUS_SUCCESS;
  const int64_t blocks = (rows + 7) / 8;
  row_sq_norms_kernel<T><<<(unsigned)(blocks < 4096 ? blocks : 4096), 256, 0, stream_of(ctx)>>>(
      a, lda, rows, cols, out);
  return check_launch("rbf: row norms");
}

// dist = max(0, xn_i + cn_j + dist_ij), where dist holds -2 x c^T.
template <typename T>
struct AddNormsClamp {
  T *dist; int64_t ld;
  const double *xn, *cn;
  __device__ void operator()(int64_t r, int64_t c) const {
    const double d = xn[r] + cn[c] + (double)dist[r * ld + c];
    dist[r * ld + c] = (T)(d > 0.0 ? d : 0.0);
  }
};

// y = alpha * exp(-gamma_j * dist) + beta * y
template <typename T>
struct ExpBlend {
  const T *dist; int64_t ldd;
  const T *gamma;
  T *y; int64_t ldy;
  double alpha, beta;
  __device__ void operator()(int64_t r, int64_t c) const {
    const T v = exp(-gamma[c] * dist[r * ldd + c]);
    T *p = y + r * ldy + c;
    *p = beta == 0.0 ? (T)(alpha * v) : (T)(alpha * v + beta * *p);
  }
};

// g = -gamma_j * y * dy
template <typename T>
struct DistanceGrad {
  const T *gamma;
  const T *y; int64_t ldy;
  const T *dy; int64_t lddy;
  T *g; int64_t ldg;
  __device__ void operator()(int64_t r, int64_t c) const {
    g[r * ldg + c] = -gamma[c] * y[r * ldy + c] * dy[r * lddy + c];
  }
};

// dgamma_j = alpha * (-sum_i dy y D) + beta * dgamma_j: one thread per column.
template <typename T>
__global__ void dgamma_kernel(const T *dist, int64_t ldd, const T *y, int64_t ldy, const T *dy,
                              int64_t lddy, int64_t n, int64_t units, T *dgamma, double alpha,
                              double beta) {
  for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < units;
       j += (int64_t)gridDim.x * blockDim.x) {
    double s = 0.0;
    for (int64_t i = 0; i < n; ++i)
      s -= (double)dy[i * lddy + j] * (double)y[i * ldy + j] * (double)dist[i * ldd + j];
    dgamma[j] = (T)(beta == 0.0 ? alpha * s : alpha * s + beta * (double)dgamma[j]);
  }
}

// out[i, :] += scale * rowsum_i * a[i, :], rowsum of g's row i (one warp per row).
template <typename T>
__global__ void __launch_bounds__(256) add_rowsum_scaled_kernel(const T *g, int64_t ldg, int64_t units,
                                                                const T *a, int64_t lda, T *out,
                                                                int64_t ldo, int64_t rows,
                                                                int64_t cols, double scale) {
  const int64_t warps = (int64_t)gridDim.x * (blockDim.x / 32);
  const int lane = threadIdx.x % 32;
  for (int64_t r = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; r < rows; r += warps) {
    double s = 0.0;
    for (int64_t j = lane; j < units; j += 32) s += (double)g[r * ldg + j];
    for (int o = 16; o > 0; o /= 2) s += __shfl_xor_sync(0xffffffffu, s, o);
    const T f = (T)(scale * s);
    for (int64_t k = lane; k < cols; k += 32) out[r * ldo + k] += f * a[r * lda + k];
  }
}

// dc[j, :] -= colsum_scaled_j * c[j, :], where colsum_scaled = -2 alpha colsum(G).
template <typename T>
struct SubScaledRows {
  const T *s;
  const T *c; int64_t ldc;
  T *dc; int64_t lddc;
  __device__ void operator()(int64_t r, int64_t k) const { dc[r * lddc + k] -= s[r] * c[r * ldc + k]; }
};

constexpr size_t align_up(size_t v) { return (v + 255) / 256 * 256; }

// Scratch of one call from the stream-ordered allocator, freed on the stream.
class StreamScratch {
 public:
  explicit StreamScratch(cudaStream_t s) : s_(s) {}
  lwStatus_t alloc(size_t bytes) {
    LW_CUDA_TRY(cudaMallocAsync(&p_, bytes, s_), "rbf: cudaMallocAsync of the scratch buffer");
    return LW_STATUS_SUCCESS;
  }
  ~StreamScratch() {
    if (p_) (void)cudaFreeAsync(p_, s_);
  }
  char *get() const { return static_cast<char *>(p_); }

 private:
  cudaStream_t s_;
  void *p_ = nullptr;
};

#define LW_RBF_TRY(expr)                            \
  do {                                              \
    const lwStatus_t st_ = (expr);                  \
    if (st_ != LW_STATUS_SUCCESS) return st_;       \
  } while (0)

// dist (n, units, ld) = squared distances of x's rows to c's rows.
template <typename T>
lwStatus_t squared_distances(const CudaContext &ctx, DType dt, const T *x, int64_t ldx, const T *c,
                             int64_t ldc, int64_t n, int64_t in, int64_t units, T *dist, int64_t ld,
                             double *xn, double *cn) {
  LW_RBF_TRY(row_sq_norms<T>(ctx, x, ldx, n, in, xn));
  LW_RBF_TRY(row_sq_norms<T>(ctx, c, ldc, units, in, cn));
  LinearForwardArgs f{dt, n, in, units, x, ldx, c, ldc, nullptr, dist, ld,
                      LW_ACTIVATION_IDENTITY, -2.0, 0.0};
  LW_RBF_TRY(linear_forward(ctx, f));
  return launch_map2d(ctx, n, units, false, AddNormsClamp<T>{dist, ld, xn, cn}, "rbf: distances");
}

template <typename T>
lwStatus_t rbf_forward_t(const CudaContext &ctx, const RbfForwardArgs &a) {
  const size_t dist_bytes = a.beta != 0.0 ? align_up(sizeof(T) * (size_t)(a.n * a.units)) : 0;
  StreamScratch scratch(stream_of(ctx));
  LW_RBF_TRY(scratch.alloc(dist_bytes + align_up(sizeof(double) * (size_t)a.n) +
                           align_up(sizeof(double) * (size_t)a.units)));
  T *y = static_cast<T *>(a.y);
  T *dist = a.beta != 0.0 ? reinterpret_cast<T *>(scratch.get()) : y;
  const int64_t ld = a.beta != 0.0 ? a.units : a.ldy;
  double *xn = reinterpret_cast<double *>(scratch.get() + dist_bytes);
  double *cn = reinterpret_cast<double *>(scratch.get() + dist_bytes + align_up(sizeof(double) * a.n));
  LW_RBF_TRY(squared_distances<T>(ctx, a.dtype, static_cast<const T *>(a.x), a.ldx,
                                  static_cast<const T *>(a.c), a.ldc, a.n, a.in, a.units, dist, ld,
                                  xn, cn));
  return launch_map2d(ctx, a.n, a.units, false,
                      ExpBlend<T>{dist, ld, static_cast<const T *>(a.gamma), y, a.ldy, a.alpha, a.beta},
                      "rbf: exp");
}

template <typename T>
lwStatus_t rbf_backward_t(const CudaContext &ctx, const RbfBackwardArgs &a) {
  const int64_t n = a.n, in = a.in, units = a.units;
  const T *x = static_cast<const T *>(a.x), *c = static_cast<const T *>(a.c);
  const T *gamma = static_cast<const T *>(a.gamma), *y = static_cast<const T *>(a.y);
  const T *dy = static_cast<const T *>(a.dy);
  const size_t g_bytes = align_up(sizeof(T) * (size_t)(n * units));
  const size_t xn_bytes = align_up(sizeof(double) * (size_t)n);
  const size_t cn_bytes = align_up(sizeof(double) * (size_t)units);
  const size_t cs_bytes = align_up(sizeof(T) * (size_t)units);
  StreamScratch scratch(stream_of(ctx));
  LW_RBF_TRY(scratch.alloc(g_bytes + xn_bytes + cn_bytes + cs_bytes));
  T *g = reinterpret_cast<T *>(scratch.get());
  double *xn = reinterpret_cast<double *>(scratch.get() + g_bytes);
  double *cn = reinterpret_cast<double *>(scratch.get() + g_bytes + xn_bytes);
  T *colsum = reinterpret_cast<T *>(scratch.get() + g_bytes + xn_bytes + cn_bytes);
  const int64_t ldg = units;
  if (a.dgamma) {
    LW_RBF_TRY(squared_distances<T>(ctx, a.dtype, x, a.ldx, c, a.ldc, n, in, units, g, ldg, xn, cn));
    const int64_t blocks = (units + 255) / 256;
    dgamma_kernel<T><<<(unsigned)(blocks < 4096 ? blocks : 4096), 256, 0, stream_of(ctx)>>>(
        g, ldg, y, a.ldy, dy, a.lddy, n, units, static_cast<T *>(a.dgamma), a.alpha, a.beta);
    LW_RBF_TRY(check_launch("rbf: dgamma"));
  }
  if (!a.dx && !a.dc) return LW_STATUS_SUCCESS;
  LW_RBF_TRY(launch_map2d(ctx, n, units, false, DistanceGrad<T>{gamma, y, a.ldy, dy, a.lddy, g, ldg},
                          "rbf: distance gradient"));
  // dx = alpha * 2 (rowsum(G) x - G c) + beta dx
  if (a.dx) {
    LinearBackwardDataArgs d{a.dtype, n, in, units, g, ldg, c, a.ldc, a.dx, a.lddx,
                             -2.0 * a.alpha, a.beta};
    LW_RBF_TRY(linear_backward_data(ctx, d));
    const int64_t blocks = (n + 7) / 8;
    add_rowsum_scaled_kernel<T><<<(unsigned)(blocks < 4096 ? blocks : 4096), 256, 0, stream_of(ctx)>>>(
        g, ldg, units, x, a.ldx, static_cast<T *>(a.dx), a.lddx, n, in, 2.0 * a.alpha);
    LW_RBF_TRY(check_launch("rbf: dx"));
  }
  // dc = alpha * 2 (colsum(G) c - G^T x) + beta dc; the GEMM's bias gradient
  // gives colsum scaled by -2 alpha (beta 0 on a zeroed buffer).
  if (a.dc) {
    LW_CUDA_TRY(cudaMemsetAsync(colsum, 0, sizeof(T) * (size_t)units, stream_of(ctx)),
                "rbf: clearing the column sums");
    LinearBackwardWeightsArgs w{a.dtype, n, in, units, g, ldg, x, a.ldx, a.dc, a.lddc, colsum,
                                -2.0 * a.alpha, a.beta};
    // the bias gradient is blended with the same beta: on zeros that is harmless
    LW_RBF_TRY(linear_backward_weights(ctx, w));
    LW_RBF_TRY(launch_map2d(ctx, units, in, false,
                            SubScaledRows<T>{colsum, c, a.ldc, static_cast<T *>(a.dc), a.lddc},
                            "rbf: dcenters"));
  }
  return LW_STATUS_SUCCESS;
}

}  // namespace

lwStatus_t rbf_forward(const CudaContext &ctx, const RbfForwardArgs &a) {
  LW_CUDA_DEVICE_GUARD(ctx, "lwRbfForward");
  return a.dtype == DType::F32 ? rbf_forward_t<float>(ctx, a) : rbf_forward_t<double>(ctx, a);
}

lwStatus_t rbf_backward(const CudaContext &ctx, const RbfBackwardArgs &a) {
  LW_CUDA_DEVICE_GUARD(ctx, "lwRbfBackward");
  return a.dtype == DType::F32 ? rbf_backward_t<float>(ctx, a) : rbf_backward_t<double>(ctx, a);
}

}  // namespace lw::cuda
