/*
 * layerwise.h -- the public C API of layerwise.
 *
 * cuDNN-style primitives for dense (fully connected) networks: a handle says
 * where the pointers live (CPU or CUDA), tensor descriptors describe 2-D
 * row-major matrices, and every primitive blends its result into its output as
 *
 *     out = alpha * result + beta * out
 *
 * with alpha and beta given as host doubles. When beta == 0 the output is
 * never read, so NaN garbage in it cannot leak into the result.
 *
 * Every function returns an lwStatus_t; no C++ exception crosses this API.
 * On LW_STATUS_BAD_PARAM (and other failures) lwGetLastErrorMessage() says,
 * for the calling thread, which argument was wrong and why. All arguments are
 * validated before any memory is touched.
 *
 * Conventions
 *   - A tensor is a 2-D row-major matrix (rows, cols) whose rows start
 *     row_stride elements apart (row_stride >= cols). A vector such as a bias
 *     is a 1 x n tensor; class labels are an n x 1 LW_INT32 tensor.
 *   - A dense layer's weight W has shape (out_features, in_features); the
 *     lecture writes its entries alpha_ji (from unit i to unit j).
 *   - A batch with 0 rows is valid: outputs are untouched, loss values are 0.
 *   - All tensors of one call share one floating dtype (labels excepted).
 */
#ifndef LAYERWISE_LAYERWISE_H_
#define LAYERWISE_LAYERWISE_H_

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32) && defined(LAYERWISE_SHARED_BUILD)
#define LW_API __declspec(dllexport)
#elif defined(__GNUC__)
#define LW_API __attribute__((visibility("default")))
#else
#define LW_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define LAYERWISE_VERSION_MAJOR 0
#define LAYERWISE_VERSION_MINOR 1
#define LAYERWISE_VERSION_PATCH 0
/* MAJOR * 10000 + MINOR * 100 + PATCH, as lwGetVersion() returns it. */
#define LAYERWISE_VERSION \
  (LAYERWISE_VERSION_MAJOR * 10000 + LAYERWISE_VERSION_MINOR * 100 + LAYERWISE_VERSION_PATCH)

typedef enum {
  LW_STATUS_SUCCESS = 0,
  LW_STATUS_BAD_PARAM = 1,        /* an argument is invalid; nothing was touched */
  LW_STATUS_NOT_SUPPORTED = 2,    /* valid request this build/handle cannot serve */
  LW_STATUS_ALLOC_FAILED = 3,     /* host or device memory could not be allocated */
  LW_STATUS_EXECUTION_FAILED = 4, /* a kernel failed to launch or run */
  LW_STATUS_INTERNAL_ERROR = 5    /* a bug in layerwise */
} lwStatus_t;

typedef enum { LW_DEVICE_CPU = 0, LW_DEVICE_CUDA = 1 } lwDevice_t;

typedef enum { LW_FLOAT32 = 0, LW_FLOAT64 = 1, LW_INT32 = 2 } lwDataType_t;

/*
 * Activations, applied elementwise.
 *   IDENTITY  y = x                    dx = dy
 *   SIGMOID   y = 1 / (1 + exp(-x))    dx = dy * y * (1 - y)
 *   TANH      y = tanh(x)              dx = dy * (1 - y * y)
 *   RELU      y = max(x, 0)            dx = dy * 1[x > 0]   (needs x; y works too: 1[y > 0])
 *   THRESHOLD y = 1[x > 0]             dx = 0
 * THRESHOLD is the lecture's linear threshold unit. Its derivative is zero
 * almost everywhere (and undefined at 0), so no gradient flows through it:
 * that is exactly why the lecture replaces it with the sigmoid.
 * NaN inputs propagate for IDENTITY, SIGMOID, TANH and RELU; THRESHOLD maps NaN to 0.
 */
typedef enum {
  LW_ACTIVATION_IDENTITY = 0,
  LW_ACTIVATION_SIGMOID = 1,
  LW_ACTIVATION_TANH = 2,
  LW_ACTIVATION_RELU = 3,
  LW_ACTIVATION_THRESHOLD = 4
} lwActivationMode_t;

/*
 * Losses over a batch of n rows (see lwLossForwardBackward).
 *   QUADRATIC             C = 1/(2n) sum_rows ||pred - target||^2,  grad = (pred - target) / n
 *   BINARY_CROSS_ENTROPY  C = -1/n sum (t log p + (1 - t) log(1 - p)), summed over outputs,
 *                         with p clamped to [LW_BCE_EPS, 1 - LW_BCE_EPS] (eps = 1e-7 for
 *                         float32 and 1e-12 for float64); grad = (p - t) / (p (1 - p)) / n
 *                         evaluated at the clamped p
 *   SOFTMAX_CROSS_ENTROPY pred = logits, target = int32 class ids (n x 1),
 *                         C = -1/n sum log softmax(pred)[label], grad = (softmax - onehot) / n
 */
typedef enum {
  LW_LOSS_QUADRATIC = 0,
  LW_LOSS_BINARY_CROSS_ENTROPY = 1,
  LW_LOSS_SOFTMAX_CROSS_ENTROPY = 2
} lwLossMode_t;

#define LW_BCE_EPS_FLOAT32 1e-7
#define LW_BCE_EPS_FLOAT64 1e-12

typedef struct lwContext *lwHandle_t;
typedef struct lwTensorStruct *lwTensorDescriptor_t;

/* ---- status, errors, version -------------------------------------------- */
LW_API const char *lwGetErrorString(lwStatus_t status);
/* Message of the last failing call on this thread ("" if none). */
LW_API const char *lwGetLastErrorMessage(void);
LW_API size_t lwGetVersion(void);

/* ---- machine probes -------------------------------------------------------
 * What this CPU delivers to this process, for benchmarks that report a
 * fraction of peak. Both run on the CPU thread pool with the active ISA.
 * lwMeasureFmaPeak: float32 multiply-add rate of independent register-only
 *   FMA chains on the widest vector ISA in use (multiply + add on "generic"),
 *   on nthreads threads together, in GFLOP/s (2 flops per lane per FMA). The
 *   iteration count grows until one run lasts min_seconds; the best of
 *   `repeats` runs is reported. nthreads in [1, 4096], min_seconds in (0, 60],
 *   repeats in [1, 1000].
 * lwMeasureCopyBandwidth: copies one buffer of `bytes` into another (memcpy
 *   over nthreads page-aligned slices, buffers first touched by the thread that
 *   copies them), best of `repeats`, in GB/s counting bytes read + bytes
 *   written (2 * bytes per copy). Pick bytes well above the last-level cache
 *   to measure memory. bytes in [4096, 2^36].                                 */
LW_API lwStatus_t lwMeasureFmaPeak(int nthreads, double min_seconds, int repeats, double *gflops);
LW_API lwStatus_t lwMeasureCopyBandwidth(int nthreads, size_t bytes, int repeats, double *gbps);

/* ---- handles -------------------------------------------------------------
 * lwCreate(LW_DEVICE_CUDA) returns NOT_SUPPORTED in a build without CUDA and
 * EXECUTION_FAILED (with a message) when no usable GPU or driver is found. */
LW_API lwStatus_t lwCreate(lwHandle_t *handle, lwDevice_t device);
LW_API lwStatus_t lwDestroy(lwHandle_t handle);
LW_API lwStatus_t lwGetDevice(lwHandle_t handle, lwDevice_t *device);
/* CPU: threads used by this handle's kernels; n <= 0 means "all cores". */
LW_API lwStatus_t lwSetNumThreads(lwHandle_t handle, int n);
LW_API lwStatus_t lwGetNumThreads(lwHandle_t handle, int *n);
/* CUDA: bind a cudaStream_t (NULL = legacy default stream). NOT_SUPPORTED on CPU handles. */
LW_API lwStatus_t lwSetStream(lwHandle_t handle, void *stream);
LW_API lwStatus_t lwGetStream(lwHandle_t handle, void **stream);

/* ---- tensor descriptors ------------------------------------------------- */
LW_API lwStatus_t lwCreateTensorDescriptor(lwTensorDescriptor_t *desc);
/* rows >= 0, cols >= 1, row_stride >= cols (a 0-row tensor is allowed). */
LW_API lwStatus_t lwSetTensor2dDescriptor(lwTensorDescriptor_t desc, lwDataType_t dtype,
                                          int64_t rows, int64_t cols, int64_t row_stride);
LW_API lwStatus_t lwGetTensor2dDescriptor(lwTensorDescriptor_t desc, lwDataType_t *dtype,
                                          int64_t *rows, int64_t *cols, int64_t *row_stride);
LW_API lwStatus_t lwDestroyTensorDescriptor(lwTensorDescriptor_t desc);

/* ---- dense layers --------------------------------------------------------
 * x (n, in), w (out, in), b (1, out) or NULL, y (n, out):
 *     y = alpha * act(x w^T + b) + beta * y                                  */
LW_API lwStatus_t lwLinearForward(lwHandle_t handle, double alpha,
                                  lwTensorDescriptor_t xDesc, const void *x,
                                  lwTensorDescriptor_t wDesc, const void *w,
                                  lwTensorDescriptor_t bDesc, const void *b,
                                  lwActivationMode_t activation, double beta,
                                  lwTensorDescriptor_t yDesc, void *y);

/* dy (n, out), w (out, in), dx (n, in):  dx = alpha * dy w + beta * dx       */
LW_API lwStatus_t lwLinearBackwardData(lwHandle_t handle, double alpha,
                                       lwTensorDescriptor_t dyDesc, const void *dy,
                                       lwTensorDescriptor_t wDesc, const void *w, double beta,
                                       lwTensorDescriptor_t dxDesc, void *dx);

/* dy (n, out), x (n, in), dw (out, in), db (1, out) or NULL:
 *     dw = alpha * dy^T x + beta * dw,  db = alpha * sum_rows(dy) + beta * db
 * beta = 1 accumulates into existing gradients.                              */
LW_API lwStatus_t lwLinearBackwardWeights(lwHandle_t handle, double alpha,
                                          lwTensorDescriptor_t dyDesc, const void *dy,
                                          lwTensorDescriptor_t xDesc, const void *x, double beta,
                                          lwTensorDescriptor_t dwDesc, void *dw,
                                          lwTensorDescriptor_t dbDesc, void *db);

/* ---- activations --------------------------------------------------------
 * y = alpha * act(x) + beta * y   (x and y may be the same memory when beta == 0) */
LW_API lwStatus_t lwActivationForward(lwHandle_t handle, lwActivationMode_t mode, double alpha,
                                      lwTensorDescriptor_t xDesc, const void *x, double beta,
                                      lwTensorDescriptor_t yDesc, void *y);

/* dx = alpha * act'(.) * dy + beta * dx. y is the forward output; x the forward
 * input (may be NULL except for RELU, where y is used when x is NULL).       */
LW_API lwStatus_t lwActivationBackward(lwHandle_t handle, lwActivationMode_t mode, double alpha,
                                       lwTensorDescriptor_t yDesc, const void *y,
                                       lwTensorDescriptor_t dyDesc, const void *dy,
                                       lwTensorDescriptor_t xDesc, const void *x, double beta,
                                       lwTensorDescriptor_t dxDesc, void *dx);

/* Row-wise softmax, max-subtracted:  y = alpha * softmax(x) + beta * y       */
LW_API lwStatus_t lwSoftmaxForward(lwHandle_t handle, double alpha,
                                   lwTensorDescriptor_t xDesc, const void *x, double beta,
                                   lwTensorDescriptor_t yDesc, void *y);

/* ---- losses -------------------------------------------------------------
 * Writes the batch loss (see lwLossMode_t) to *loss_value (host double, may be
 * NULL) and, when grad is not NULL, dLoss/dpred into grad (overwritten). For
 * SOFTMAX_CROSS_ENTROPY target is an (n, 1) LW_INT32 tensor of class ids in
 * [0, classes); an id out of range is BAD_PARAM (checked before any write on
 * CPU; on CUDA the loss comes back NaN and the status is BAD_PARAM).         */
LW_API lwStatus_t lwLossForwardBackward(lwHandle_t handle, lwLossMode_t loss,
                                        lwTensorDescriptor_t predDesc, const void *pred,
                                        lwTensorDescriptor_t targetDesc, const void *target,
                                        double *loss_value,
                                        lwTensorDescriptor_t gradDesc, void *grad);

/* ---- optimizer ----------------------------------------------------------
 * SGD in place, one pass, torch.optim.SGD's convention (dampening 0):
 *     g = grad + weight_decay * param
 *     if momentum != 0:  v = momentum * v + g
 *                        g = nesterov ? g + momentum * v : v
 *     param -= lr * g
 * velocity may be NULL only when momentum == 0; nesterov needs momentum > 0.
 * param, grad and velocity share one descriptor.                             */
LW_API lwStatus_t lwSgdUpdate(lwHandle_t handle, double lr, double momentum, double weight_decay,
                              int nesterov, lwTensorDescriptor_t paramDesc, void *param,
                              const void *grad, void *velocity);

/* ---- fused training step ------------------------------------------------
 * One dense layer's backward pass and SGD step in one call, for training loops
 * that need the update but not the gradient itself:
 *     dx = dy w                  (with the weights before the update; skipped if dx is NULL)
 *     dw = dy^T x,  db = sum_rows dy
 *     w, b updated in place exactly as lwSgdUpdate(lr, momentum, weight_decay, nesterov)
 *          would update them with grad = dw (resp. db)
 * The gradients are never written to memory: each tile of dw is reduced in
 * registers and applied to w and its velocity at once, which halves the memory
 * traffic of small-batch training, where the weights dominate it.
 * dy (n, out), x (n, in), w (out, in) with w_velocity laid out like w,
 * b (1, out) or NULL with b_velocity like b, dx (n, in) or NULL.
 * Velocities may be NULL only when momentum == 0.                            */
LW_API lwStatus_t lwLinearBackwardSgdUpdate(lwHandle_t handle,
                                            lwTensorDescriptor_t dyDesc, const void *dy,
                                            lwTensorDescriptor_t xDesc, const void *x,
                                            double lr, double momentum, double weight_decay,
                                            int nesterov,
                                            lwTensorDescriptor_t wDesc, void *w, void *w_velocity,
                                            lwTensorDescriptor_t bDesc, void *b, void *b_velocity,
                                            lwTensorDescriptor_t dxDesc, void *dx);

/* ---- optimizers ---------------------------------------------------------
 * An optimizer descriptor holds a mode, its hyperparameters and the step count
 * t (completed training steps). lwOptimizerStep updates one tensor in place in
 * one pass, reading param, grad and the mode's state buffers and writing param
 * and the state; it uses step number s = t + 1 and leaves t alone, so every
 * tensor of a training step sees the same s. lwOptimizerAdvanceStep then moves
 * t on once per training step. Formulas and defaults follow torch.optim
 * (single-tensor variants; amsgrad, maximize, dampening are not offered). With
 * g the gradient, p the parameter, all operations elementwise:
 *
 *   SGD      (defaults lr 1e-3, momentum 0, weight_decay 0, nesterov 0)
 *            g += weight_decay * p
 *            if momentum != 0:  buf = momentum * buf + g
 *                               g = nesterov ? g + momentum * buf : buf
 *            p -= lr * g
 *            state: [buf] when momentum != 0, else none.
 *   ADAM     (defaults lr 1e-3, beta1 0.9, beta2 0.999, eps 1e-8, weight_decay 0)
 *            g += weight_decay * p                            (L2, coupled)
 *            m = m + (1 - beta1) * (g - m)
 *            v = beta2 * v + (1 - beta2) * g * g
 *            p -= lr / (1 - beta1^s) * m / (sqrt(v) / sqrt(1 - beta2^s) + eps)
 *            state: [m (exp_avg), v (exp_avg_sq)].
 *   ADAMW    (as ADAM, but weight_decay defaults to 1e-2 and is decoupled:)
 *            p *= 1 - lr * weight_decay, then the ADAM step with g unchanged.
 *   RMSPROP  (defaults lr 1e-2, alpha 0.99, eps 1e-8, weight_decay 0, momentum 0, centered 0)
 *            g += weight_decay * p
 *            sq = alpha * sq + (1 - alpha) * g * g
 *            if centered:  ga = ga + (1 - alpha) * (g - ga);  d = sqrt(sq - ga * ga) + eps
 *            else:         d = sqrt(sq) + eps
 *            if momentum > 0:  buf = momentum * buf + g / d;  p -= lr * buf
 *            else:             p -= lr * g / d
 *            state: [sq (square_avg), buf (momentum_buffer) when momentum > 0,
 *                    ga (grad_avg) when centered], in that order.
 *   ADAGRAD  (defaults lr 1e-2, lr_decay 0, weight_decay 0, initial_accumulator_value 0,
 *            eps 1e-10)
 *            g += weight_decay * p
 *            sum += g * g
 *            p -= lr / (1 + (s - 1) * lr_decay) * g / (sqrt(sum) + eps)
 *            state: [sum], filled with initial_accumulator_value before the first step.
 *
 * lwSetOptimizerDescriptor checks the fields the mode uses (finite; lr, eps,
 * weight_decay, momentum, alpha, lr_decay, initial_accumulator_value >= 0;
 * 0 <= beta1, beta2 < 1; nesterov and centered 0 or 1; nesterov needs
 * momentum > 0) and ignores the others. A descriptor is created as SGD with
 * SGD's defaults and t = 0; setting it again keeps t.                         */
typedef struct lwOptimizerStruct *lwOptimizerDescriptor_t;

typedef enum {
  LW_OPTIMIZER_SGD = 0,
  LW_OPTIMIZER_ADAM = 1,
  LW_OPTIMIZER_ADAMW = 2,
  LW_OPTIMIZER_RMSPROP = 3,
  LW_OPTIMIZER_ADAGRAD = 4
} lwOptimizerMode_t;

/* Hyperparameters, with torch.optim's names and meanings. */
typedef struct {
  double lr;
  double momentum;        /* SGD, RMSPROP */
  double weight_decay;    /* all; ADAMW: decoupled (param *= 1 - lr*wd) */
  int nesterov;           /* SGD */
  double beta1, beta2;    /* ADAM, ADAMW */
  double alpha;           /* RMSPROP smoothing constant */
  double eps;             /* ADAM, ADAMW, RMSPROP, ADAGRAD */
  int centered;           /* RMSPROP */
  double lr_decay;        /* ADAGRAD */
  double initial_accumulator_value; /* ADAGRAD */
} lwOptimizerParams_t;

/* Fills *params with torch.optim's defaults for mode (every field written; unused ones 0). */
LW_API lwStatus_t lwOptimizerParamsDefault(lwOptimizerMode_t mode, lwOptimizerParams_t *params);
LW_API lwStatus_t lwCreateOptimizerDescriptor(lwOptimizerDescriptor_t *opt);
/* Validates (see above); on BAD_PARAM the descriptor is unchanged. */
LW_API lwStatus_t lwSetOptimizerDescriptor(lwOptimizerDescriptor_t opt, lwOptimizerMode_t mode,
                                           const lwOptimizerParams_t *params);
/* mode or params may be NULL to skip them. */
LW_API lwStatus_t lwGetOptimizerDescriptor(lwOptimizerDescriptor_t opt, lwOptimizerMode_t *mode,
                                           lwOptimizerParams_t *params);
LW_API lwStatus_t lwDestroyOptimizerDescriptor(lwOptimizerDescriptor_t opt);
/* Step count t = number of completed steps (starts at 0). lwOptimizerStep uses t+1 for bias
 * correction and does not change t; lwOptimizerAdvanceStep increments t once per training step
 * (after every tensor of that step was updated). t must be >= 0. */
LW_API lwStatus_t lwSetOptimizerStepCount(lwOptimizerDescriptor_t opt, int64_t t);
LW_API lwStatus_t lwGetOptimizerStepCount(lwOptimizerDescriptor_t opt, int64_t *t);
LW_API lwStatus_t lwOptimizerAdvanceStep(lwOptimizerDescriptor_t opt);
/* Number of state buffers a tensor needs under this descriptor (SGD: 1 if momentum else 0;
 * ADAM/ADAMW: 2; RMSPROP: 1 + (momentum>0) + centered; ADAGRAD: 1). Each buffer is laid out like
 * param (same descriptor), zero-filled by the caller before the first step (ADAGRAD's sum filled
 * with initial_accumulator_value). */
LW_API lwStatus_t lwGetOptimizerStateCount(lwOptimizerDescriptor_t opt, int *count);
/* One in-place pass over param (any float dtype, row-strided like the other primitives).
 * grad and every state buffer share paramDesc. state: array of `count` pointers (may be NULL
 * when count == 0); every pointer non-NULL unless the tensor is empty. */
LW_API lwStatus_t lwOptimizerStep(lwHandle_t handle, lwOptimizerDescriptor_t opt,
                                  lwTensorDescriptor_t paramDesc, void *param, const void *grad,
                                  void *const *state);
/* Fused dense-layer backward + update driven by a descriptor:
 *     dx = dy w               (with the weights before the update; skipped if dx is NULL)
 *     w, b stepped as lwOptimizerStep would step them with grad dw = dy^T x, db = sum_rows dy
 * SGD uses the register-tiled fused kernel of lwLinearBackwardSgdUpdate (dw never written to
 * memory); the other modes compute dw and db into a workspace the call allocates, then step.
 * dy (n, out), x (n, in), w (out, in) with w_state laid out like w (count pointers, see
 * lwGetOptimizerStateCount), b (1, out) or NULL with b_state like b, dx (n, in) or NULL.
 * Uses step number t + 1 and does not change t.                                */
LW_API lwStatus_t lwLinearBackwardUpdate(lwHandle_t handle, lwOptimizerDescriptor_t opt,
                                         lwTensorDescriptor_t dyDesc, const void *dy,
                                         lwTensorDescriptor_t xDesc, const void *x,
                                         lwTensorDescriptor_t wDesc, void *w, void *const *w_state,
                                         lwTensorDescriptor_t bDesc, void *b, void *const *b_state,
                                         lwTensorDescriptor_t dxDesc, void *dx);

/* ---- sampling -----------------------------------------------------------
 * y = 1[u < p] elementwise (0.0 or 1.0 in y's dtype), with u uniform in [0, 1)
 * drawn from a counter-based generator: element (r, c) uses counter
 * offset + r * cols + c under key seed, so results do not depend on threads or
 * device, and a caller advances offset by rows*cols between draws.
 * p is a tensor shaped like y, or NULL to use the scalar p_scalar for every element.
 * y may alias p.                                                              */
LW_API lwStatus_t lwBernoulliSample(lwHandle_t handle, uint64_t seed, uint64_t offset,
                                    lwTensorDescriptor_t pDesc, const void *p, double p_scalar,
                                    lwTensorDescriptor_t yDesc, void *y);

/* ---- RBF units -----------------------------------------------------------
 * Radial basis function units with centers c (units, in) and widths gamma (1, units):
 *     y (n, units) = alpha * exp(-gamma_j * ||x_i - c_j||^2) + beta * y
 * The squared distance is computed as ||x_i||^2 - 2 x_i . c_j + ||c_j||^2 on the
 * matrix-product kernel and clamped at 0 against cancellation. y must not
 * overlap x or centers. Widths are normally > 0 (a negative one makes the unit grow
 * with the distance; it is not rejected, since values are never read on the host).
 *
 * lwRbfBackward takes y as lwRbfForward wrote it with alpha = 1, beta = 0, and dy,
 * and writes, each when its pointer is not NULL (descriptor NULL with it):
 *     dx (n, in)         = alpha * dL/dx      + beta * dx
 *     dcenters (units, in) = alpha * dL/dc    + beta * dcenters
 *     dgamma (1, units)  = alpha * dL/dgamma  + beta * dgamma
 * With n == 0, dcenters and dgamma are scaled by beta. Outputs overlap no input. */
LW_API lwStatus_t lwRbfForward(lwHandle_t handle, double alpha,
                               lwTensorDescriptor_t xDesc, const void *x,
                               lwTensorDescriptor_t cDesc, const void *centers,
                               lwTensorDescriptor_t gammaDesc, const void *gamma, double beta,
                               lwTensorDescriptor_t yDesc, void *y);
LW_API lwStatus_t lwRbfBackward(lwHandle_t handle, double alpha,
                                lwTensorDescriptor_t xDesc, const void *x,
                                lwTensorDescriptor_t cDesc, const void *centers,
                                lwTensorDescriptor_t gammaDesc, const void *gamma,
                                lwTensorDescriptor_t yDesc, const void *y,
                                lwTensorDescriptor_t dyDesc, const void *dy, double beta,
                                lwTensorDescriptor_t dxDesc, void *dx,
                                lwTensorDescriptor_t dcDesc, void *dcenters,
                                lwTensorDescriptor_t dgammaDesc, void *dgamma);

/* ---- networks ------------------------------------------------------------
 * A network is a feed-forward stack of dense layers on one handle's device:
 * layer i maps sizes[i] inputs to sizes[i+1] outputs as
 *     a_{i+1} = act_i(a_i W_i^T + b_i),   W_i (sizes[i+1], sizes[i]), b_i (1, sizes[i+1]) or none,
 * all in one float dtype. The network owns its parameters (in the handle's
 * memory: host for CPU handles, device memory for CUDA handles) and its
 * workspace; lwNetworkGetLayer hands out zero-copy pointers, so callers may
 * read and write the parameters in place (e.g. to initialise or pretrain them).
 * Parameters start zeroed; lwNetworkInitUniform fills them like nn.Linear's
 * default init. The handle must outlive the network. A network is not
 * thread-safe: one call at a time per network.                                */
typedef struct lwNetworkStruct *lwNetwork_t;

/* nlayers >= 1; sizes: nlayers + 1 positive layer widths (input first);
 * activations, has_bias: one per layer (has_bias may be NULL: every layer has a bias);
 * dtype LW_FLOAT32 or LW_FLOAT64. Layer widths are capped at 2^31 - 1 and each
 * weight matrix at 2^40 elements (BAD_PARAM beyond).                           */
LW_API lwStatus_t lwNetworkCreate(lwHandle_t handle, int nlayers, const int64_t *sizes,
                                  const lwActivationMode_t *activations, const int *has_bias,
                                  lwDataType_t dtype, lwNetwork_t *net);
LW_API lwStatus_t lwNetworkDestroy(lwNetwork_t net);
LW_API lwStatus_t lwNetworkGetHandle(lwNetwork_t net, lwHandle_t *handle);
LW_API lwStatus_t lwNetworkGetLayerCount(lwNetwork_t net, int *nlayers);
/* sizes: room for nlayers + 1 values (input width first). */
LW_API lwStatus_t lwNetworkGetSizes(lwNetwork_t net, int64_t *sizes);
LW_API lwStatus_t lwNetworkGetActivation(lwNetwork_t net, int layer, lwActivationMode_t *activation);
LW_API lwStatus_t lwNetworkGetDataType(lwNetwork_t net, lwDataType_t *dtype);
/* Layer `layer`'s weight (out, in) and bias (1, out): descriptors owned by the
 * network (do not set or destroy them) and pointers into its parameter memory,
 * valid until lwNetworkDestroy. A layer without bias gives *bDesc = *b = NULL.
 * Any output pointer may be NULL when the caller does not want that value.    */
LW_API lwStatus_t lwNetworkGetLayer(lwNetwork_t net, int layer, lwTensorDescriptor_t *wDesc, void **w,
                                    lwTensorDescriptor_t *bDesc, void **b);
/* W_i, b_i ~ U(-1/sqrt(in_i), 1/sqrt(in_i)) drawn from the counter-based generator
 * (see lwBernoulliSample): parameter element k of layer i (weights first, then
 * bias, row-major) uses counter k under key seed + i, so the result does not
 * depend on threads or device. Float64 draws, rounded to the network dtype.   */
LW_API lwStatus_t lwNetworkInitUniform(lwNetwork_t net, uint64_t seed);

/* y (n, sizes[nlayers]) = the network applied to x (n, sizes[0]); both dense
 * row-major in the network dtype and in the handle's memory. n >= 0. The
 * workspace grows on the first call at a larger n and is reused afterwards.   */
LW_API lwStatus_t lwNetworkForward(lwNetwork_t net, int64_t n, const void *x, void *y);

/* ---- network training ------------------------------------------------------
 * lwNetworkTrainStep: one optimizer step on the batch (x, target) of n rows:
 *   forward (every layer's output kept), the loss of the last layer's output
 *   (lwLossForwardBackward: target (n, outputs) in the network dtype, or (n, 1)
 *   int32 class ids for SOFTMAX_CROSS_ENTROPY, dense, in the handle's memory),
 *   then from the last layer down: dz = act'(.) dy (lwActivationBackward, skipped
 *   for IDENTITY), and the layer's update. SGD without gradient norms uses
 *   lwLinearBackwardUpdate (the fused kernel: dW never written to memory); every
 *   other case is exactly lwNetworkComputeGradients then lwNetworkApplyGradients
 *   (one code path): dx (lwLinearBackwardData, old weights), dW and db
 *   (lwLinearBackwardWeights) into the network's flat gradient buffer, then
 *   every tensor stepped with lwOptimizerStep. Finally lwOptimizerAdvanceStep(opt).
 *   The result is bitwise that of the same primitive calls made one by one.
 *   The fused SGD path differs from ComputeGradients + ApplyGradients(SGD) only
 *   in rounding (dW summed in another order inside the kernel): after a few
 *   steps the parameters differ by about an ulp of the largest weight (measured
 *   ~5e-8 x max|W| in float32, ~1e-16 x max|W| in float64);
 *   tests/capi/test_network_split.cpp allows 1e-6 and 1e-14 x max|W|.
 * *loss_value (may be NULL) gets the batch loss before the update.
 * The optimizer state (momentum buffers, Adam moments...) lives in the network,
 * laid out for the descriptor's mode and state count; it is created zeroed
 * (ADAGRAD: filled with initial_accumulator_value) at the first step and again
 * whenever a step sees a different mode, state count or ADAGRAD initial value.
 * Workspace grows at the first step of a larger n; steps at the same or a
 * smaller n allocate nothing. n == 0 returns loss 0 and changes nothing.     */
LW_API lwStatus_t lwNetworkTrainStep(lwNetwork_t net, int64_t n, const void *x, const void *target,
                                     lwLossMode_t loss, lwOptimizerDescriptor_t opt, double *loss_value);
/* Drops the optimizer state: the next step starts it afresh. */
LW_API lwStatus_t lwNetworkResetOptimizerState(lwNetwork_t net);

/* ---- the training step in three parts (data parallelism) ------------------
 * lwNetworkTrainStep == lwNetworkComputeGradients, then (e.g.) an allreduce of
 * the flat gradient buffer in place, then lwNetworkApplyGradients; bitwise so for
 * every optimizer when SGD's fused path is not taken (see lwNetworkTrainStep).
 *
 * lwNetworkComputeGradients: forward, loss and backward of the batch (x, target)
 * exactly as lwNetworkTrainStep (same arguments and target layout), with no
 * update: every layer's dW and db go into ONE contiguous network-owned buffer,
 * row-major in the order W0, b0, W1, b1, ... (a layer without bias contributes
 * no b), i.e. laid out like the parameters. Honors LW_NETWORK_INPUT_GRADIENT and
 * LW_NETWORK_GRADIENT_NORMS (norms of these gradients). n == 0: loss 0 and the
 * gradient buffer set to zero (an empty batch's gradient; e.g. a data-parallel
 * rank whose slice of the last global batch is empty); nothing else changes.   */
LW_API lwStatus_t lwNetworkComputeGradients(lwNetwork_t net, int64_t n, const void *x, const void *target,
                                            lwLossMode_t loss, double *loss_value);
/* The flat gradient buffer: *flat (handle's memory) of *count elements in the
 * network dtype, *desc (may be NULL) a (1, count) descriptor owned by the network.
 * Valid until lwNetworkDestroy (created zeroed at the first call that needs it).
 * Its contents are those of the last lwNetworkComputeGradients (or unfused
 * lwNetworkTrainStep); the caller may change them in place (allreduce, scale)
 * before lwNetworkApplyGradients.                                              */
LW_API lwStatus_t lwNetworkGetGradients(lwNetwork_t net, lwTensorDescriptor_t *desc, void **flat,
                                        int64_t *count);
/* Steps every tensor with lwOptimizerStep(opt) from the flat gradient buffer and
 * the network's optimizer state (created or re-laid out as lwNetworkTrainStep
 * does), then lwOptimizerAdvanceStep(opt). NOT_SUPPORTED before any
 * lwNetworkComputeGradients.                                                   */
LW_API lwStatus_t lwNetworkApplyGradients(lwNetwork_t net, lwOptimizerDescriptor_t opt);
/* The last layer's output (n, sizes[nlayers]) of the last TrainStep or
 * ComputeGradients, before that step's update (what its loss saw): network
 * memory, valid until the next such call. *yDesc (may be NULL) is owned by the
 * network. NOT_SUPPORTED before the first such call.                           */
LW_API lwStatus_t lwNetworkGetOutput(lwNetwork_t net, lwTensorDescriptor_t *yDesc, const void **y);
/* Creates the optimizer state for opt's mode now, as the first step under opt
 * would (zeroed; ADAGRAD's filled with initial_accumulator_value), unless the
 * held state already has opt's layout; then it is left as it is.               */
LW_API lwStatus_t lwNetworkPrepareOptimizerState(lwNetwork_t net, lwOptimizerDescriptor_t opt);
/* The held state buffer `slot` (lwOptimizerStep's order, see lwGetOptimizerStateCount)
 * of layer `layer`'s weight (tensor 0) or bias (tensor 1): *desc (may be NULL) is
 * the tensor's descriptor, *state a pointer into network memory that the caller may
 * read and write in place. NOT_SUPPORTED while no state exists. A later layout
 * change (another mode or state count, lwNetworkResetOptimizerState) gives the
 * network a new buffer; pointers handed out before stay valid memory until
 * lwNetworkDestroy but are no longer used by the network.                      */
LW_API lwStatus_t lwNetworkGetOptimizerState(lwNetwork_t net, int layer, int tensor, int slot,
                                             lwTensorDescriptor_t *desc, void **state);

typedef enum {
  /* value 1: each step also computes dJ/dx for the input batch (lwNetworkGetInputGradient). */
  LW_NETWORK_INPUT_GRADIENT = 0,
  /* value 1: each step records per-layer gradient norms (lwNetworkGetGradientNorms);
   * SGD then takes the unfused path (dW in memory), whose rounding differs slightly. */
  LW_NETWORK_GRADIENT_NORMS = 1
} lwNetworkOption_t;
LW_API lwStatus_t lwNetworkSetOption(lwNetwork_t net, lwNetworkOption_t option, int value);
LW_API lwStatus_t lwNetworkGetOption(lwNetwork_t net, lwNetworkOption_t option, int *value);
/* dJ/dx of the last step with LW_NETWORK_INPUT_GRADIENT on: (n, sizes[0]) dense, in
 * network memory, valid until the next step. NOT_SUPPORTED when no such step ran. */
LW_API lwStatus_t lwNetworkGetInputGradient(lwNetwork_t net, lwTensorDescriptor_t *dxDesc,
                                            const void **dx);
/* norms[i] = sqrt(||dW_i||_F^2 + ||db_i||^2) of the last step with
 * LW_NETWORK_GRADIENT_NORMS on (norms: room for nlayers values), computed in
 * float64 on the host. NOT_SUPPORTED when no such step ran.                   */
LW_API lwStatus_t lwNetworkGetGradientNorms(lwNetwork_t net, double *norms);

/* ---- network model files -------------------------------------------------
 * A model file is a safetensors file (8-byte little-endian header length N,
 * N bytes of JSON header, raw little-endian C-order tensors) whose
 * __metadata__ holds "format": "layerwise", "format_version": "1", "dtype"
 * ("float32" or "float64") and "architecture" (a JSON string: the Python
 * module's config(), e.g. {"type":"Sequential","modules":[{"type":"Linear",
 * "in_features":784,"out_features":500,"bias":true,"activation":"sigmoid"},...]}).
 * Tensors are named by their dotted parameter path ("0.weight", "0.bias", ...;
 * a bare Linear has "weight" and "bias"), weight [out, in], bias [out].
 *
 * lwNetworkSave writes a flat Sequential of Linear modules. It is atomic: the
 * file is written to a temporary file in the same directory, fsync'ed and
 * renamed over path, so a failed or interrupted save leaves any previous file
 * intact.
 *
 * lwNetworkLoad accepts a Sequential (nested ones too) of Linear, Activation
 * (fused into the preceding Linear when that one's activation is identity)
 * and Dropout (the identity at inference) modules, or a bare Linear; other
 * module types are LW_STATUS_NOT_SUPPORTED, naming the type. Everything is
 * validated before anything is allocated: the header length against the file
 * size (and a 100 MB cap), JSON nesting (at most 64 levels), the metadata,
 * every tensor's dtype, shape and byte range (no overlap, no gap, no trailing
 * bytes), and the tensors against the architecture (none missing, none extra).
 * A bad file is BAD_PARAM, an unreadable one EXECUTION_FAILED; the message
 * names the file and the problem. Memory used stays bounded by the file size.
 * The parameters are copied into the handle's memory.                         */
LW_API lwStatus_t lwNetworkSave(lwNetwork_t net, const char *path);
LW_API lwStatus_t lwNetworkLoad(lwHandle_t handle, const char *path, lwNetwork_t *net);
/* The same from a model file's bytes in host memory; name is used in messages (may be NULL). */
LW_API lwStatus_t lwNetworkLoadFromMemory(lwHandle_t handle, const void *data, size_t size,
                                          const char *name, lwNetwork_t *net);

/* ---- build information -------------------------------------------------- */
/* Comma-separated CPU kernel ISAs compiled in, e.g. "generic,avx2,avx512". */
LW_API const char *lwGetCompiledIsas(void);
/* The ISA the CPU kernels use now (after LAYERWISE_ISA and CPU detection). */
LW_API const char *lwGetActiveIsa(void);
/* 1 if the CUDA backend was compiled in. */
LW_API int lwCudaCompiled(void);
/* Number of CUDA devices usable (0 without CUDA, driver or GPU; never fails). */
LW_API int lwCudaDeviceCount(void);

/* ---- CPU description and GEMM cache blocking ----------------------------- */
/* Data-cache sizes in bytes (0: absent or unknown) and associativities (0: unknown).
 * l3_bytes_per_core: the L3 divided among the cores that share it (lwDeriveGemmBlocking
 * takes 0 as "all of l3_bytes"). */
typedef struct {
  int64_t l1d_bytes;
  int l1d_ways;
  int64_t l2_bytes;
  int l2_ways;
  int64_t l3_bytes;
  int64_t l3_bytes_per_core;
} lwCacheSizes_t;
/* The CPU GEMM's cache blocks (elements): an mc x kc block of op(A) in L2, a
 * kc x nr micro-panel of op(B) in L1, a kc x nc block of op(B) per thread in L3;
 * mr x nr is the register tile. */
typedef struct {
  int64_t mc, kc, nc;
  int mr, nr;
} lwGemmBlocking_t;
typedef struct {
  char model[64];         /* the CPU's brand string ("" when unknown) */
  char isa[16];           /* the active ISA, as lwGetActiveIsa */
  char cache_source[16];  /* where the sizes came from: "sysfs", "cpuid" or "default" */
  lwCacheSizes_t caches;
  int logical_cpus;       /* CPUs this process may run on */
  /* The blocking the GEMM uses now for each dtype (all zero on the generic ISA,
   * whose reference product is not blocked), and where it came from:
   * "analytical" (derived from the caches), "tuned" (lwSetGemmBlocking) or "env"
   * (LAYERWISE_GEMM_BLOCKS), for the float32 BATCH class. */
  lwGemmBlocking_t gemm_f32, gemm_f64;
  char gemm_source[16];
} lwCpuInfo_t;
/* Fills *info. LW_STATUS_BAD_PARAM when info is NULL or when LAYERWISE_GEMM_BLOCKS
 * is set but is not "mc,kc,nc" (three decimal integers, mc in [1, 16384], kc in
 * [8, 8192], nc in [1, 65536]; mc and nc are rounded up to multiples of mr, nr).
 * lwCreate reports the same error. */
LW_API lwStatus_t lwGetCpuInfo(lwCpuInfo_t *info);
/* The packed GEMM's shape classes: SQUARE when M, N and K are all >= 512, BATCH
 * otherwise (a training batch of 33 or more rows; batches up to 32 take unblocked paths). */
typedef enum { LW_GEMM_SHAPE_BATCH = 0, LW_GEMM_SHAPE_SQUARE = 1 } lwGemmShapeClass_t;
/* Sets, process-wide, the blocking the GEMM uses for one dtype and shape class
 * (what layerwise's tune() measured best); blocking NULL goes back to the
 * analytical one. mr and nr are ignored; mc, kc, nc are validated as for
 * LAYERWISE_GEMM_BLOCKS, which, when set, takes precedence. lwGetCpuInfo reports
 * the BATCH class. */
LW_API lwStatus_t lwSetGemmBlocking(lwDataType_t dtype, lwGemmShapeClass_t shape,
                                    const lwGemmBlocking_t *blocking);
/* The analytical blocking (the BLIS model, see csrc/cpu/cpuinfo.cpp) that the GEMM
 * of `isa` ("avx2" or "avx512", compiled in or not) would derive for `caches` and
 * `dtype`; for examining other CPUs' caches. */
LW_API lwStatus_t lwDeriveGemmBlocking(const lwCacheSizes_t *caches, const char *isa,
                                       lwDataType_t dtype, lwGemmBlocking_t *blocking);

#ifdef __cplusplus
}
#endif

#endif /* LAYERWISE_LAYERWISE_H_ */
