// sgd_sampling.cu -- Bernoulli sampling from the counter-based generator in
// rng.h, an elementwise functor (map2d.cuh) with the CPU backend's arithmetic
// (csrc/cpu/sampling.cpp), so a draw is bit-identical on either device. (The
// SGD step that lived here is the SGD mode of optimizer.cu.)
#include "../common/rng.h"
#include "map2d.cuh"

namespace lw::cuda {
namespace {

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
lwStatus_t bernoulli_t(const CudaContext &ctx, const BernoulliArgs &a) {
  const bool contig = a.rows == 1 || (a.ldy == a.cols && (a.p == nullptr || a.ldp == a.cols));
  // Flattened walks see (0, r * cols + c): the same counter as (r, c).
  const BernoulliOp<T> op{static_cast<const T *>(a.p), a.ldp, a.p_scalar, static_cast<T *>(a.y),
                          a.ldy, contig ? 0 : a.cols, a.seed, a.offset};
  return launch_map2d(ctx, a.rows, a.cols, contig, op, "lwBernoulliSample");
}

}  // namespace

lwStatus_t bernoulli_sample(const CudaContext &ctx, const BernoulliArgs &a) {
  LW_CUDA_DEVICE_GUARD(ctx, "lwBernoulliSample");
  return a.dtype == DType::F32 ? bernoulli_t<float>(ctx, a) : bernoulli_t<double>(ctx, a);
}

}  // namespace lw::cuda
