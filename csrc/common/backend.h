// backend.h -- the internal contract between the C API layer (csrc/api) and the
// backends (csrc/cpu always, csrc/cuda when built). The API layer validates every
// argument, then hands a backend one plain struct per primitive: raw pointers,
// sizes and leading dimensions (row strides, in elements), all already checked.
// A backend may assume: sizes >= 0, leading dims >= cols, pointers non-NULL
// where required, one floating dtype. Backends report failures by returning a
// status after calling lw::set_error().
#pragma once

#include <cstdint>
#include <string>

#include "layerwise/layerwise.h"
#include "optimizer_math.h"

namespace lw {

enum class DType : int { F32 = LW_FLOAT32, F64 = LW_FLOAT64 };

// Records the thread-local message that lwGetLastErrorMessage() returns.
void set_error(const std::string &msg);
// Convenience: set_error(msg) and return status.
lwStatus_t fail(lwStatus_t status, const std::string &msg);

struct CpuContext {
  int num_threads = 0;  // resolved, >= 1
};

struct CudaContext {
  void *stream = nullptr;  // cudaStream_t
  int device = 0;
  void *scratch = nullptr;  // device scratch owned by the handle (loss reductions etc.)
  size_t scratch_bytes = 0;
};

// y (n, out) = alpha * act(x (n, in) w^T (in, out) + b (out)) + beta * y
struct LinearForwardArgs {
  DType dtype;
  int64_t n, in, out;
  const void *x; int64_t ldx;
  const void *w; int64_t ldw;
  const void *b;            // contiguous, length out; may be null
  void *y; int64_t ldy;
  lwActivationMode_t act;
  double alpha, beta;
};

// dx (n, in) = alpha * dy (n, out) w (out, in) + beta * dx
struct LinearBackwardDataArgs {
  DType dtype;
  int64_t n, in, out;
  const void *dy; int64_t lddy;
  const void *w; int64_t ldw;
  void *dx; int64_t lddx;
  double alpha, beta;
};

// dw (out, in) = alpha * dy^T (out, n) x (n, in) + beta * dw
// db (out)     = alpha * sum_rows dy + beta * db          (db may be null)
struct LinearBackwardWeightsArgs {
  DType dtype;
  int64_t n, in, out;
  const void *dy; int64_t lddy;
  const void *x; int64_t ldx;
  void *dw; int64_t lddw;
  void *db;                 // contiguous, length out; may be null
  double alpha, beta;
};

// y = alpha * act(x) + beta * y, (rows, cols)
struct ActivationForwardArgs {
  DType dtype;
  int64_t rows, cols;
  const void *x; int64_t ldx;
  void *y; int64_t ldy;
  lwActivationMode_t mode;
  double alpha, beta;
};

// dx = alpha * act'(.) * dy + beta * dx. x may be null (then RELU uses y).
struct ActivationBackwardArgs {
  DType dtype;
  int64_t rows, cols;
  const void *y; int64_t ldy;
  const void *dy; int64_t lddy;
  const void *x; int64_t ldx;
  void *dx; int64_t lddx;
  lwActivationMode_t mode;
  double alpha, beta;
};

// y = alpha * softmax_rows(x) + beta * y
struct SoftmaxArgs {
  DType dtype;
  int64_t rows, cols;
  const void *x; int64_t ldx;
  void *y; int64_t ldy;
  double alpha, beta;
};

// See lwLossMode_t. target: same dtype as pred (QUADRATIC, BCE) or int32 ids (n)
// with stride ldt (SOFTMAX_CROSS_ENTROPY; labels already range-checked on CPU).
struct LossArgs {
  DType dtype;
  lwLossMode_t loss;
  int64_t rows, cols;
  const void *pred; int64_t ldp;
  const void *target; int64_t ldt;
  void *grad; int64_t ldg;  // may be null
  double *loss_value;       // host; may be null
};

// In-place SGD (torch.optim.SGD convention); param, grad, velocity share ld.
struct SgdArgs {
  DType dtype;
  int64_t rows, cols, ld;
  void *param;
  const void *grad;
  void *velocity;           // null iff momentum == 0
  double lr, momentum, weight_decay;
  bool nesterov;
};

// Fused backward + SGD for one dense layer (see lwLinearBackwardSgdUpdate):
// dx (n, in) = dy w (old w; skipped when dx is null), then w (out, in) and b (out)
// take an SGD step with dw = dy^T x, db = sum_rows dy, never materialized.
struct LinearSgdArgs {
  DType dtype;
  int64_t n, in, out;
  const void *dy; int64_t lddy;
  const void *x; int64_t ldx;
  void *w; int64_t ldw;
  void *w_velocity;          // same ld as w; null iff momentum == 0
  void *b, *b_velocity;      // contiguous, length out; b may be null
  void *dx; int64_t lddx;    // may be null
  double lr, momentum, weight_decay;
  bool nesterov;
};

// y = 1[u < p], counter for (r, c) = offset + r * cols + c (see rng.h).
struct BernoulliArgs {
  DType dtype;
  int64_t rows, cols;
  const void *p; int64_t ldp;  // may be null: use p_scalar
  double p_scalar;
  void *y; int64_t ldy;
  uint64_t seed, offset;
};

namespace cpu {
lwStatus_t linear_forward(const CpuContext &, const LinearForwardArgs &);
lwStatus_t linear_backward_data(const CpuContext &, const LinearBackwardDataArgs &);
lwStatus_t linear_backward_weights(const CpuContext &, const LinearBackwardWeightsArgs &);
lwStatus_t activation_forward(const CpuContext &, const ActivationForwardArgs &);
lwStatus_t activation_backward(const CpuContext &, const ActivationBackwardArgs &);
lwStatus_t softmax_forward(const CpuContext &, const SoftmaxArgs &);
lwStatus_t loss_forward_backward(const CpuContext &, const LossArgs &);
lwStatus_t sgd_update(const CpuContext &, const SgdArgs &);
lwStatus_t bernoulli_sample(const CpuContext &, const BernoulliArgs &);
lwStatus_t linear_backward_sgd(const CpuContext &, const LinearSgdArgs &);
int max_threads();
const char *compiled_isas();
const char *active_isa();
}  // namespace cpu

#ifdef LAYERWISE_WITH_CUDA
namespace cuda {
int device_count();  // never fails; 0 without driver/GPU
lwStatus_t context_create(CudaContext *);   // picks the current device, checks arch
void context_destroy(CudaContext *);
lwStatus_t linear_forward(const CudaContext &, const LinearForwardArgs &);
lwStatus_t linear_backward_data(const CudaContext &, const LinearBackwardDataArgs &);
lwStatus_t linear_backward_weights(const CudaContext &, const LinearBackwardWeightsArgs &);
lwStatus_t activation_forward(const CudaContext &, const ActivationForwardArgs &);
lwStatus_t activation_backward(const CudaContext &, const ActivationBackwardArgs &);
lwStatus_t softmax_forward(const CudaContext &, const SoftmaxArgs &);
lwStatus_t loss_forward_backward(const CudaContext &, const LossArgs &);  // syncs the stream
lwStatus_t sgd_update(const CudaContext &, const SgdArgs &);
lwStatus_t bernoulli_sample(const CudaContext &, const BernoulliArgs &);
lwStatus_t linear_backward_sgd(const CudaContext &, const LinearSgdArgs &);
}  // namespace cuda
#endif

// ---- optimizers (see lwOptimizerStep, optimizer_math.h) ----------------------
// One in-place step of `mode` over param (rows, cols), with grad and the
// state_count state buffers sharing ld; coef holds step s = t + 1's constants.
struct OptimizerStepArgs {
  DType dtype;
  int64_t rows, cols, ld;
  void *param;
  const void *grad;
  void *state[3];           // the first state_count are non-null
  int state_count;
  lwOptimizerMode_t mode;
  OptimizerCoefficients<double> coef;
};

// Fused dense-layer backward + optimizer step (see lwLinearBackwardUpdate) for
// the modes without a register-fused kernel: dx = dy w (old w; skipped when dx
// is null), then w and b step with dw = dy^T x and db = sum_rows dy, which the
// backend computes into a workspace of its own.
struct LinearUpdateArgs {
  DType dtype;
  int64_t n, in, out;
  const void *dy; int64_t lddy;
  const void *x; int64_t ldx;
  void *w; int64_t ldw;
  void *w_state[3];         // laid out like w
  void *b;                  // contiguous, length out; may be null
  void *b_state[3];         // contiguous like b
  int state_count;
  void *dx; int64_t lddx;   // may be null
  lwOptimizerMode_t mode;
  OptimizerCoefficients<double> coef;
};

// The older SGD entry points (lwSgdUpdate, lwLinearBackwardSgdUpdate) as the
// SGD mode of the optimizer arguments, so both paths run the same kernels.
inline OptimizerCoefficients<double> sgd_coefficients(double lr, double momentum, double weight_decay,
                                                      bool nesterov, bool has_velocity) {
  lwOptimizerParams_t p{};
  p.lr = lr;
  p.momentum = momentum;
  p.weight_decay = weight_decay;
  p.nesterov = nesterov ? 1 : 0;
  OptimizerCoefficients<double> c = optimizer_coefficients(LW_OPTIMIZER_SGD, p, 0);
  c.use_momentum = has_velocity;
  return c;
}

inline OptimizerStepArgs as_optimizer_step(const SgdArgs &s) {
  OptimizerStepArgs a{};
  a.dtype = s.dtype;
  a.rows = s.rows;
  a.cols = s.cols;
  a.ld = s.ld;
  a.param = s.param;
  a.grad = s.grad;
  a.state_count = s.velocity ? 1 : 0;
  a.state[0] = s.velocity;
  a.mode = LW_OPTIMIZER_SGD;
  a.coef = sgd_coefficients(s.lr, s.momentum, s.weight_decay, s.nesterov, s.velocity != nullptr);
  return a;
}

inline LinearUpdateArgs as_linear_update(const LinearSgdArgs &s) {
  LinearUpdateArgs a{};
  a.dtype = s.dtype;
  a.n = s.n;
  a.in = s.in;
  a.out = s.out;
  a.dy = s.dy;
  a.lddy = s.lddy;
  a.x = s.x;
  a.ldx = s.ldx;
  a.w = s.w;
  a.ldw = s.ldw;
  a.w_state[0] = s.w_velocity;
  a.b = s.b;
  a.b_state[0] = s.b_velocity;
  a.state_count = s.w_velocity ? 1 : 0;
  a.dx = s.dx;
  a.lddx = s.lddx;
  a.mode = LW_OPTIMIZER_SGD;
  a.coef = sgd_coefficients(s.lr, s.momentum, s.weight_decay, s.nesterov, s.w_velocity != nullptr);
  return a;
}

namespace cpu {
lwStatus_t optimizer_step(const CpuContext &, const OptimizerStepArgs &);
lwStatus_t linear_backward_update(const CpuContext &, const LinearUpdateArgs &);
}  // namespace cpu
#ifdef LAYERWISE_WITH_CUDA
namespace cuda {
lwStatus_t optimizer_step(const CudaContext &, const OptimizerStepArgs &);
lwStatus_t linear_backward_update(const CudaContext &, const LinearUpdateArgs &);
}  // namespace cuda
#endif

}  // namespace lw
