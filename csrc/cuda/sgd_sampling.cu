// sgd_sampling.cu -- the in-place SGD step (torch.optim.SGD convention, see
// lwSgdUpdate) and Bernoulli sampling from the counter-based generator in
// rng.h. Both are elementwise functors (map2d.cuh); the arithmetic is the CPU
// backend's (csrc/cpu/sgd.cpp, csrc/cpu/sampling.cpp), so a Bernoulli draw is
// bit-identical on either device.
#include "../common/rng.h"
#include "map2d.cuh"

namespace lw::cuda {
namespace {

template <typename T>
struct SgdOp {
  T *param;
  const T *grad;
  T *velocity;  // null when momentum == 0
  int64_t ld;
  T lr, mu, wd;
  bool nesterov;
  __device__ void operator()(int64_t r, int64_t c) const {
    const int64_t i = r * ld + c;
    const T p = param[i];
    if (!velocity) {
      param[i] = p - lr * (grad[i] + wd * p);
    } else if (!nesterov) {
      const T v = mu * velocity[i] + grad[i] + wd * p;
      velocity[i] = v;
      param[i] = p - lr * v;
    } else {
      const T d = grad[i] + wd * p;
      const T v = mu * velocity[i] + d;
      velocity[i] = v;
      param[i] = p - lr * (d + mu * v);
    }
  }
};

template <typename T>
struct BernoulliOp {
  const T *p;  // null: use p_scalar
  int64_t ldp;
  double p_scalar;
  T *y;
  int64_t ldy;
  int64_t cols;  // of the original matrix: the counter is offset + r * cols + c
  uint64_t seed, offset;
  __device__ void operator()(int64_t r, int64_t c) const {
    // y may alias p: the element is read before it is written.
    const double pj = p ? (double)p[r * ldp + c] : p_scalar;
    const uint64_t counter = offset + (uint64_t)r * (uint64_t)cols + (uint64_t)c;
    y[r * ldy + c] = uniform01(seed, counter) < pj ? T(1) : T(0);
  }
};

template <typename T>
lwStatus_t sgd_t(const CudaContext &ctx, const SgdArgs &a) {
  const SgdOp<T> op{static_cast<T *>(a.param), static_cast<const T *>(a.grad),
                    static_cast<T *>(a.velocity), a.ld, (T)a.lr, (T)a.momentum,
                    (T)a.weight_decay, a.nesterov};
  return launch_map2d(ctx, a.rows, a.cols, a.rows == 1 || a.ld == a.cols, op, "lwSgdUpdate");
}

template <typename T>
lwStatus_t bernoulli_t(const CudaContext &ctx, const BernoulliArgs &a) {
  const bool contig = a.rows == 1 || (a.ldy == a.cols && (a.p == nullptr || a.ldp == a.cols));
  // Flattened walks see (0, r * cols + c): the same counter as (r, c).
  const BernoulliOp<T> op{static_cast<const T *>(a.p), a.ldp, a.p_scalar, static_cast<T *>(a.y),
                          a.ldy, contig ? 0 : a.cols, a.seed, a.offset};
  return launch_map2d(ctx, a.rows, a.cols, contig, op, "lwBernoulliSample");
}

}  // namespace

lwStatus_t sgd_update(const CudaContext &ctx, const SgdArgs &a) {
  LW_CUDA_DEVICE_GUARD(ctx, "lwSgdUpdate");
  return a.dtype == DType::F32 ? sgd_t<float>(ctx, a) : sgd_t<double>(ctx, a);
}

lwStatus_t bernoulli_sample(const CudaContext &ctx, const BernoulliArgs &a) {
  LW_CUDA_DEVICE_GUARD(ctx, "lwBernoulliSample");
  return a.dtype == DType::F32 ? bernoulli_t<float>(ctx, a) : bernoulli_t<double>(ctx, a);
}

}  // namespace lw::cuda
