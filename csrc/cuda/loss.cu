// loss.cu -- quadratic, binary cross-entropy and softmax cross-entropy: value
// and gradient in one pass (definitions in layerwise.h's lwLossMode_t, the CPU
// reference in csrc/cpu/loss.cpp). The batch sum is reduced on the device in a
// fixed order: a grid whose size depends only on the shape writes one partial
// sum per block into the handle's scratch, one block adds the partials, and the
// value is copied back to the host (the one stream sync among the primitives).
// Softmax cross-entropy labels are device memory, so their range is checked
// here: an out-of-range id records its row in the scratch, makes the loss NaN,
// fills that row's gradient with NaN, and the call returns BAD_PARAM.
#include <cmath>
#include <limits>
#include <sstream>

#include "../common/loss_math.h"
#include "cuda_common.h"
#include "reduce.cuh"

namespace lw::cuda {
namespace {

constexpr int kThreads = 256;

// Sum of one double per thread over the block, thread 0 gets it.
__device__ __forceinline__ double block_sum(double v) {
  __shared__ double smem[8];
  return group_reduce<kThreads>(v, SumOp(), smem);
}

// Quadratic and BCE: flat walk over the rows * cols elements.
template <typename T, bool BCE>
__global__ void __launch_bounds__(kThreads)
    dense_loss_kernel(const T *__restrict__ pred, int64_t ldp, const T *__restrict__ target,
                      int64_t ldt, T *grad, int64_t ldg, int64_t rows, int64_t cols, double inv_n,
                      double eps, double *partials) {
  const int64_t total = rows * cols;
  double s = 0.0;
  for (int64_t i = (int64_t)blockIdx.x * kThreads + threadIdx.x; i < total;
       i += (int64_t)gridDim.x * kThreads) {
    const int64_t r = i / cols, c = i - r * cols;
    const T pv = pred[r * ldp + c], tv = target[r * ldt + c];
    if (!BCE) {
      const T d = pv - tv;
      s += (double)d * (double)d;
      if (grad) grad[r * ldg + c] = static_cast<T>(d * inv_n);
    } else {
      const double q = bce_clamp((double)pv, eps), t = (double)tv;
      s += bce_term(q, t);
      if (grad) grad[r * ldg + c] = static_cast<T>(bce_grad(q, t) * inv_n);
    }
  }
  s = block_sum(s);
  if (threadIdx.x == 0) partials[blockIdx.x] = s;
}

// Softmax cross-entropy: G threads per row, as in the softmax kernel.
template <typename T, int G>
__global__ void __launch_bounds__(kThreads)
    softmax_xent_kernel(const T *__restrict__ pred, int64_t ldp, const int32_t *__restrict__ labels,
                        int64_t ldl, T *grad, int64_t ldg, int64_t rows, int64_t cols,
                        double inv_n, double *partials, unsigned long long *bad_row) {
  constexpr int RPB = kThreads / G;
  __shared__ T redT[8];
  __shared__ double redD[8];
  const int lane = threadIdx.x % G, grp = threadIdx.x / G;
  double total = 0.0;  // this group's rows, kept by lane 0
  for (int64_t r0 = (int64_t)blockIdx.x * RPB; r0 < rows; r0 += (int64_t)gridDim.x * RPB) {
    const int64_t r = r0 + grp;
    const bool active = r < rows;
    const T *pr = pred + (active ? r : 0) * ldp;
    T m = -INFINITY;
    if (active)
      for (int64_t c = lane; c < cols; c += G) {
        const T v = pr[c];
        m = v > m ? v : m;
      }
    m = group_reduce<G>(m, MaxOp(), redT);
    double s = 0.0;
    if (active)
      for (int64_t c = lane; c < cols; c += G) s += exp((double)(pr[c] - m));
    s = group_reduce<G>(s, SumOp(), redD);
    if (!active) continue;  // uniform over the group
    const int32_t y = labels[r * ldl];
    const bool ok = y >= 0 && (int64_t)y < cols;
    if (lane == 0) {
      if (ok) {
        total += log(s) - (double)(pr[y] - m);  // -log softmax[y]
      } else {
        total += std::numeric_limits<double>::quiet_NaN();
        atomicMin(bad_row, (unsigned long long)r);
      }
    }
    if (grad) {
      T *gr = grad + r * ldg;
      const double inv_s = 1.0 / s;
      for (int64_t c = lane; c < cols; c += G) {
        const double q = exp((double)(pr[c] - m)) * inv_s;
        gr[c] = ok ? static_cast<T>((q - (c == y ? 1.0 : 0.0)) * inv_n)
                   : std::numeric_limits<T>::quiet_NaN();
      }
    }
  }
  total = block_sum(total);
  if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

// One block adds the partial sums in a fixed order.
__global__ void __launch_bounds__(kLossMaxBlocks) finalize_kernel(const double *partials, int count,
                                                                  double *out) {
  __shared__ double buf[kLossMaxBlocks];
  const int t = threadIdx.x;
  buf[t] = t < count ? partials[t] : 0.0;
  __syncthreads();
  for (int h = kLossMaxBlocks / 2; h > 0; h >>= 1) {
    if (t < h) buf[t] += buf[t + h];
    __syncthreads();
  }
  if (t == 0) *out = buf[0];
}

int loss_blocks(int64_t work_items, int per_block) {
  const int64_t b = (work_items + per_block - 1) / per_block;
  return (int)(b < 1 ? 1 : (b > kLossMaxBlocks ? kLossMaxBlocks : b));
}

template <typename T>
lwStatus_t launch_loss(const CudaContext &ctx, const LossArgs &a, double *partials,
                       unsigned long long *bad_row, int *blocks) {
  cudaStream_t s = stream_of(ctx);
  const T *pred = static_cast<const T *>(a.pred);
  T *grad = static_cast<T *>(a.grad);
  const double inv_n = 1.0 / (double)a.rows;
  const double eps = bce_eps((int)sizeof(T));
  switch (a.loss) {
    case LW_LOSS_QUADRATIC:
    case LW_LOSS_BINARY_CROSS_ENTROPY: {
      *blocks = loss_blocks(a.rows * a.cols, kThreads);
      const T *target = static_cast<const T *>(a.target);
      if (a.loss == LW_LOSS_QUADRATIC)
        dense_loss_kernel<T, false><<<*blocks, kThreads, 0, s>>>(pred, a.ldp, target, a.ldt, grad,
                                                                 a.ldg, a.rows, a.cols, inv_n, eps,
                                                                 partials);
      else
        dense_loss_kernel<T, true><<<*blocks, kThreads, 0, s>>>(pred, a.ldp, target, a.ldt, grad,
                                                                a.ldg, a.rows, a.cols, inv_n, eps,
                                                                partials);
      break;
    }
    case LW_LOSS_SOFTMAX_CROSS_ENTROPY: {
      const int32_t *labels = static_cast<const int32_t *>(a.target);
      if (a.cols <= 1024) {
        *blocks = loss_blocks(a.rows, kThreads / 32);
        softmax_xent_kernel<T, 32><<<*blocks, kThreads, 0, s>>>(
            pred, a.ldp, labels, a.ldt, grad, a.ldg, a.rows, a.cols, inv_n, partials, bad_row);
      } else {
        *blocks = loss_blocks(a.rows, 1);
        softmax_xent_kernel<T, kThreads><<<*blocks, kThreads, 0, s>>>(
            pred, a.ldp, labels, a.ldt, grad, a.ldg, a.rows, a.cols, inv_n, partials, bad_row);
      }
      break;
    }
  }
  return check_launch("lwLossForwardBackward");
}

}  // namespace

lwStatus_t loss_forward_backward(const CudaContext &ctx, const LossArgs &a) {
  LW_CUDA_DEVICE_GUARD(ctx, "lwLossForwardBackward");
  if (a.rows == 0) {
    if (a.loss_value) *a.loss_value = 0.0;
    return LW_STATUS_SUCCESS;
  }
  if (!ctx.scratch || ctx.scratch_bytes < kScratchBytes)
    return fail(LW_STATUS_INTERNAL_ERROR, "lwLossForwardBackward: CUDA handle has no scratch buffer");
  cudaStream_t s = stream_of(ctx);
  auto *hdr = static_cast<LossScratch *>(ctx.scratch);
  auto *partials = reinterpret_cast<double *>(static_cast<char *>(ctx.scratch) + kLossPartialsOffset);

  // bad_row = ~0 ("none"); value is overwritten by finalize_kernel.
  LW_CUDA_TRY(cudaMemsetAsync(hdr, 0xFF, sizeof(LossScratch), s), "lwLossForwardBackward");
  int blocks = 1;
  lwStatus_t st = a.dtype == DType::F32 ? launch_loss<float>(ctx, a, partials, &hdr->bad_row, &blocks)
                                        : launch_loss<double>(ctx, a, partials, &hdr->bad_row, &blocks);
  if (st != LW_STATUS_SUCCESS) return st;
  finalize_kernel<<<1, kLossMaxBlocks, 0, s>>>(partials, blocks, &hdr->value);
  st = check_launch("lwLossForwardBackward (reduction)");
  if (st != LW_STATUS_SUCCESS) return st;

  LossScratch host{};
  LW_CUDA_TRY(cudaMemcpyAsync(&host, hdr, sizeof host, cudaMemcpyDeviceToHost, s),
              "lwLossForwardBackward (copy of the loss value)");
  LW_CUDA_TRY(cudaStreamSynchronize(s), "lwLossForwardBackward");

  const double inv_n = 1.0 / (double)a.rows;
  double v = host.value * inv_n;
  if (a.loss == LW_LOSS_QUADRATIC) v *= 0.5;

  if (a.loss == LW_LOSS_SOFTMAX_CROSS_ENTROPY && host.bad_row != ~0ULL) {
    if (a.loss_value) *a.loss_value = std::numeric_limits<double>::quiet_NaN();
    const int64_t row = (int64_t)host.bad_row;
    int32_t label = 0;
    const auto *lab = static_cast<const int32_t *>(a.target) + row * a.ldt;
    const cudaError_t err = cudaMemcpyAsync(&label, lab, sizeof label, cudaMemcpyDeviceToHost, s);
    const cudaError_t err2 = err == cudaSuccess ? cudaStreamSynchronize(s) : err;
    std::ostringstream msg;
    msg << "target: class id ";
    if (err2 == cudaSuccess) msg << label << " ";
    else (void)cudaGetLastError();
    msg << "at row " << row << " is out of range [0, " << a.cols
        << ") (the loss is NaN and that row's gradient is NaN)";
    return fail(LW_STATUS_BAD_PARAM, msg.str());
  }
  if (a.loss_value) *a.loss_value = v;
  return LW_STATUS_SUCCESS;
}

}  // namespace lw::cuda
