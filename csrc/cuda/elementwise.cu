// elementwise.cu -- activations forward/backward (one functor each over the
// matrix, see map2d.cuh) and the row-wise softmax (one thread group per row:
// a warp for rows of up to 1024 values, a 256-thread block for longer rows).
// Arithmetic follows the CPU backend (activation_math.h, csrc/cpu/activation.cpp).
#include "../common/activation_math.h"
#include "map2d.cuh"
#include "reduce.cuh"

namespace lw::cuda {
namespace {

template <typename T>
struct ActForwardOp {
  const T *x; int64_t ldx;
  T *y; int64_t ldy;
  lwActivationMode_t mode;
  double alpha, beta;
  __device__ void operator()(int64_t r, int64_t c) const {
    // x and y may be the same memory: each element is read before it is written.
    T *out = y + r * ldy + c;
    *out = blend(alpha, beta, activate(mode, x[r * ldx + c]), out);
  }
};

template <typename T>
struct ActBackwardOp {
  const T *y; int64_t ldy;
  const T *dy; int64_t lddy;
  const T *x; int64_t ldx;  // may be null
  T *dx; int64_t lddx;
  lwActivationMode_t mode;
  double alpha, beta;
  __device__ void operator()(int64_t r, int64_t c) const {
    const bool have_x = x != nullptr;
    const T g = activate_grad(mode, y[r * ldy + c], have_x ? x[r * ldx + c] : T(0), have_x,
                              dy[r * lddy + c]);
    T *out = dx + r * lddx + c;
    *out = blend(alpha, beta, g, out);
  }
};

template <typename T>
lwStatus_t act_forward_t(const CudaContext &ctx, const ActivationForwardArgs &a) {
  const bool contig = a.rows == 1 || (a.ldx == a.cols && a.ldy == a.cols);
  const ActForwardOp<T> op{static_cast<const T *>(a.x), a.ldx, static_cast<T *>(a.y), a.ldy,
                           a.mode, a.alpha, a.beta};
  return launch_map2d(ctx, a.rows, a.cols, contig, op, "lwActivationForward");
}

template <typename T>
lwStatus_t act_backward_t(const CudaContext &ctx, const ActivationBackwardArgs &a) {
  const bool contig = a.rows == 1 || (a.ldy == a.cols && a.lddy == a.cols && a.lddx == a.cols &&
                                      (a.x == nullptr || a.ldx == a.cols));
  const ActBackwardOp<T> op{static_cast<const T *>(a.y),  a.ldy,  static_cast<const T *>(a.dy),
                            a.lddy, static_cast<const T *>(a.x), a.ldx, static_cast<T *>(a.dx),
                            a.lddx, a.mode, a.alpha, a.beta};
  return launch_map2d(ctx, a.rows, a.cols, contig, op, "lwActivationBackward");
}

// ---- softmax ----------------------------------------------------------------------
// G threads per row, 256 / G rows per block. Three passes over the row (max,
// sum of exp, write) read x from global memory; rows are short enough that the
// second and third passes hit L1/L2.
template <typename T, int G>
__global__ void __launch_bounds__(256)
    softmax_kernel(const T *__restrict__ x, int64_t ldx, T *y, int64_t ldy, int64_t rows,
                   int64_t cols, double alpha, double beta) {
  constexpr int RPB = 256 / G;
  __shared__ T red[8];
  const int lane = threadIdx.x % G, grp = threadIdx.x / G;
  // Loop bounds are uniform over each group (whole block when G == 256), so the
  // group reductions inside are reached by all of the group's threads.
  for (int64_t r0 = (int64_t)blockIdx.x * RPB; r0 < rows; r0 += (int64_t)gridDim.x * RPB) {
    const int64_t r = r0 + grp;
    const bool active = r < rows;
    const T *xr = x + (active ? r : 0) * ldx;
    T m = -INFINITY;
    if (active)
      for (int64_t c = lane; c < cols; c += G) {
        const T v = xr[c];
        m = v > m ? v : m;
      }
    m = group_reduce<G>(m, MaxOp(), red);
    T s = 0;
    if (active)
      for (int64_t c = lane; c < cols; c += G) s += exp(xr[c] - m);
    s = group_reduce<G>(s, SumOp(), red);
    if (active) {
      const T inv = T(1) / s;
      T *yr = y + r * ldy;
      for (int64_t c = lane; c < cols; c += G) yr[c] = blend(alpha, beta, exp(xr[c] - m) * inv, yr + c);
    }
  }
}

template <typename T>
lwStatus_t softmax_t(const CudaContext &ctx, const SoftmaxArgs &a) {
  const bool narrow = a.cols <= 1024;
  const int rpb = narrow ? 256 / 32 : 1;
  int64_t blocks = (a.rows + rpb - 1) / rpb;
  if (blocks > 65535) blocks = 65535;
  const T *x = static_cast<const T *>(a.x);
  T *y = static_cast<T *>(a.y);
  if (narrow)
    softmax_kernel<T, 32><<<(unsigned)blocks, 256, 0, stream_of(ctx)>>>(x, a.ldx, y, a.ldy, a.rows,
                                                                       a.cols, a.alpha, a.beta);
  else
    softmax_kernel<T, 256><<<(unsigned)blocks, 256, 0, stream_of(ctx)>>>(x, a.ldx, y, a.ldy, a.rows,
                                                                        a.cols, a.alpha, a.beta);
  return check_launch("lwSoftmaxForward");
}

}  // namespace

lwStatus_t activation_forward(const CudaContext &ctx, const ActivationForwardArgs &a) {
  LW_CUDA_DEVICE_GUARD(ctx, "lwActivationForward");
  return a.dtype == DType::F32 ? act_forward_t<float>(ctx, a) : act_forward_t<double>(ctx, a);
}

lwStatus_t activation_backward(const CudaContext &ctx, const ActivationBackwardArgs &a) {
  LW_CUDA_DEVICE_GUARD(ctx, "lwActivationBackward");
  return a.dtype == DType::F32 ? act_backward_t<float>(ctx, a) : act_backward_t<double>(ctx, a);
}

lwStatus_t softmax_forward(const CudaContext &ctx, const SoftmaxArgs &a) {
  LW_CUDA_DEVICE_GUARD(ctx, "lwSoftmaxForward");
  if (a.rows == 0) return LW_STATUS_SUCCESS;
  return a.dtype == DType::F32 ? softmax_t<float>(ctx, a) : softmax_t<double>(ctx, a);
}

}  // namespace lw::cuda
