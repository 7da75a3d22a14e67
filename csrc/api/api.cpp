// api.cpp -- the C API: handles, tensor descriptors, argument validation and
// dispatch to the CPU or CUDA backend. Every entry point validates all of its
// arguments before any memory is touched, catches every C++ exception, and
// leaves a thread-local message for lwGetLastErrorMessage().
#include <cmath>
#include <cstring>
#include <exception>
#include <new>
#include <sstream>
#include <string>

#include "../common/backend.h"
#include "../common/optimizer_math.h"
#include "guard.h"

struct lwContext {
  lwDevice_t device = LW_DEVICE_CPU;
  lw::CpuContext cpu;
  lw::CudaContext cuda;
};

struct lwTensorStruct {
  bool set = false;
  lwDataType_t dtype = LW_FLOAT32;
  int64_t rows = 0, cols = 0, stride = 0;
};

namespace lw {

namespace {

const char *dtype_name(lwDataType_t t) {
  switch (t) {
    case LW_FLOAT32: return "float32";
    case LW_FLOAT64: return "float64";
    case LW_INT32: return "int32";
  }
  return "unknown";
}

std::string shape_str(const lwTensorStruct *d) {
  std::ostringstream s;
  s << "(" << d->rows << ", " << d->cols << ")";
  return s.str();
}

// Validation throws api::BadParam; guarded() turns every exception into a status
// and a message (guard.h, shared with the network-level API).
using api::BadParam;
using api::bad;
using api::guarded;
using api::raw_enum;

void check_handle(lwHandle_t h) {
  if (!h) bad("handle is NULL");
}

// A described, non-NULL tensor; data may be NULL only when the tensor is empty.
const lwTensorStruct *tensor(const char *name, lwTensorDescriptor_t d, const void *data) {
  if (!d) bad(std::string(name) + ": tensor descriptor is NULL");
  if (!d->set) bad(std::string(name) + ": tensor descriptor was never set (lwSetTensor2dDescriptor)");
  if (!data && d->rows > 0) bad(std::string(name) + ": data pointer is NULL");
  return d;
}

void want_float(const char *name, const lwTensorStruct *d) {
  if (d->dtype != LW_FLOAT32 && d->dtype != LW_FLOAT64)
    bad(std::string(name) + ": dtype must be float32 or float64, got " + dtype_name(d->dtype));
}

void same_dtype(const char *name, const lwTensorStruct *d, const char *ref_name,
                const lwTensorStruct *ref) {
  if (d->dtype != ref->dtype)
    bad(std::string(name) + ": dtype " + dtype_name(d->dtype) + " differs from " + ref_name +
        "'s " + dtype_name(ref->dtype) + " (one dtype per call)");
}

void want_shape(const char *name, const lwTensorStruct *d, int64_t rows, int64_t cols) {
  if (d->rows != rows || d->cols != cols) {
    std::ostringstream s;
    s << name << ": expected shape (" << rows << ", " << cols << "), got " << shape_str(d);
    bad(s.str());
  }
}

// A bias / 1 x n vector, read contiguously.
void want_vector(const char *name, const lwTensorStruct *d, int64_t n) {
  want_shape(name, d, 1, n);
}

void want_mode(const lwActivationMode_t &m) {
  const int v = raw_enum(m);
  if (v < LW_ACTIVATION_IDENTITY || v > LW_ACTIVATION_THRESHOLD)
    bad("activation: unknown mode " + std::to_string(v));
}

void want_finite(const char *name, double v) {
  if (!std::isfinite(v)) bad(std::string(name) + " must be finite, got " + std::to_string(v));
}

// x and dy of a backward call hold one row per sample.
void want_same_rows(const lwTensorStruct *xd, const lwTensorStruct *dyd) {
  if (xd->rows != dyd->rows) {
    std::ostringstream s;
    s << "x: has " << xd->rows << " rows but dy has " << dyd->rows << " (one row per sample)";
    bad(s.str());
  }
}

// dy (n, out) and x (n, in) of a weight-gradient call, and the (out, in) matrix
// (named wname) that receives or takes the gradient: described, one float dtype, chaining.
void want_weight_grad_chain(const char *wname, lwTensorDescriptor_t dyDesc, const void *dy,
                            lwTensorDescriptor_t xDesc, const void *x, lwTensorDescriptor_t wDesc,
                            const void *w, const lwTensorStruct **dyd, const lwTensorStruct **xd,
                            const lwTensorStruct **wd) {
  *dyd = tensor("dy", dyDesc, dy);
  *xd = tensor("x", xDesc, x);
  *wd = tensor(wname, wDesc, w);
  if (!w) bad(std::string(wname) + ": data pointer is NULL");
  want_float("dy", *dyd);
  same_dtype("x", *xd, "dy", *dyd);
  same_dtype(wname, *wd, "dy", *dyd);
  want_same_rows(*xd, *dyd);
  want_shape(wname, *wd, (*dyd)->cols, (*xd)->cols);
}

void want_sgd(double lr, double momentum, double weight_decay, int nesterov) {
  want_finite("lr", lr);
  want_finite("momentum", momentum);
  want_finite("weight_decay", weight_decay);
  if (momentum < 0) bad("momentum must be >= 0, got " + std::to_string(momentum));
  if (nesterov && momentum <= 0) bad("nesterov: needs momentum > 0");
}

DType dt(const lwTensorStruct *d) { return d->dtype == LW_FLOAT32 ? DType::F32 : DType::F64; }

// Calls the backend that matches the handle's device.
#ifdef LAYERWISE_WITH_CUDA
#define LW_DISPATCH(h, fn, args) \
  ((h)->device == LW_DEVICE_CUDA ? lw::cuda::fn((h)->cuda, args) : lw::cpu::fn((h)->cpu, args))
#else
#define LW_DISPATCH(h, fn, args) lw::cpu::fn((h)->cpu, args)
#endif

}  // namespace
}  // namespace lw

using namespace lw;

extern "C" {

const char *lwGetErrorString(lwStatus_t status) {
  switch (status) {
    case LW_STATUS_SUCCESS: return "LW_STATUS_SUCCESS";
    case LW_STATUS_BAD_PARAM: return "LW_STATUS_BAD_PARAM";
    case LW_STATUS_NOT_SUPPORTED: return "LW_STATUS_NOT_SUPPORTED";
    case LW_STATUS_ALLOC_FAILED: return "LW_STATUS_ALLOC_FAILED";
    case LW_STATUS_EXECUTION_FAILED: return "LW_STATUS_EXECUTION_FAILED";
    case LW_STATUS_INTERNAL_ERROR: return "LW_STATUS_INTERNAL_ERROR";
  }
  return "LW_STATUS_UNKNOWN";
}

const char *lwGetLastErrorMessage(void) { return lw::last_error(); }

size_t lwGetVersion(void) { return LAYERWISE_VERSION; }

const char *lwGetCompiledIsas(void) { return cpu::compiled_isas(); }
const char *lwGetActiveIsa(void) { return cpu::active_isa(); }

int lwCudaCompiled(void) {
#ifdef LAYERWISE_WITH_CUDA
  return 1;
#else
  return 0;
#endif
}

int lwCudaDeviceCount(void) {
#ifdef LAYERWISE_WITH_CUDA
  try {
    return cuda::device_count();
  } catch (...) {
    return 0;
  }
#else
  return 0;
#endif
}

lwStatus_t lwCreate(lwHandle_t *handle, lwDevice_t device) {
  return guarded([&] {
    if (!handle) bad("handle: output pointer is NULL");
    *handle = nullptr;
    const int dev = raw_enum(device);
    if (dev != LW_DEVICE_CPU && dev != LW_DEVICE_CUDA)
      bad("device: must be LW_DEVICE_CPU or LW_DEVICE_CUDA, got " + std::to_string(dev));
    if (lwStatus_t st = cpu::check_environment(); st != LW_STATUS_SUCCESS) return st;
    auto *ctx = new lwContext;
    ctx->device = device;
    ctx->cpu.num_threads = cpu::max_threads();
    if (device == LW_DEVICE_CUDA) {
#ifdef LAYERWISE_WITH_CUDA
      lwStatus_t st = cuda::context_create(&ctx->cuda);
      if (st != LW_STATUS_SUCCESS) {
        delete ctx;
        return st;
      }
#else
      delete ctx;
      return fail(LW_STATUS_NOT_SUPPORTED,
                  "device: this build of layerwise has no CUDA backend (built with LAYERWISE_CUDA=OFF "
                  "or without nvcc)");
#endif
    }
    *handle = ctx;
    return LW_STATUS_SUCCESS;
  });
}

lwStatus_t lwDestroy(lwHandle_t handle) {
  return guarded([&] {
    check_handle(handle);
#ifdef LAYERWISE_WITH_CUDA
    if (handle->device == LW_DEVICE_CUDA) cuda::context_destroy(&handle->cuda);
#endif
    delete handle;
    return LW_STATUS_SUCCESS;
  });
}

lwStatus_t lwGetDevice(lwHandle_t handle, lwDevice_t *device) {
  return guarded([&] {
    check_handle(handle);
    if (!device) bad("device: output pointer is NULL");
    *device = handle->device;
    return LW_STATUS_SUCCESS;
  });
}

lwStatus_t lwSetNumThreads(lwHandle_t handle, int n) {
  return guarded([&] {
    check_handle(handle);
    handle->cpu.num_threads = n > 0 ? n : cpu::max_threads();
    return LW_STATUS_SUCCESS;
  });
}

lwStatus_t lwGetNumThreads(lwHandle_t handle, int *n) {
  return guarded([&] {
    check_handle(handle);
    if (!n) bad("n: output pointer is NULL");
    *n = handle->cpu.num_threads;
    return LW_STATUS_SUCCESS;
  });
}

lwStatus_t lwSetStream(lwHandle_t handle, void *stream) {
  return guarded([&] {
    check_handle(handle);
    if (handle->device != LW_DEVICE_CUDA)
      return fail(LW_STATUS_NOT_SUPPORTED, "lwSetStream: streams exist only on CUDA handles");
    handle->cuda.stream = stream;
    return LW_STATUS_SUCCESS;
  });
}

lwStatus_t lwGetStream(lwHandle_t handle, void **stream) {
  return guarded([&] {
    check_handle(handle);
    if (!stream) bad("stream: output pointer is NULL");
    if (handle->device != LW_DEVICE_CUDA)
      return fail(LW_STATUS_NOT_SUPPORTED, "lwGetStream: streams exist only on CUDA handles");
    *stream = handle->cuda.stream;
    return LW_STATUS_SUCCESS;
  });
}

lwStatus_t lwCreateTensorDescriptor(lwTensorDescriptor_t *desc) {
  return guarded([&] {
    if (!desc) bad("desc: output pointer is NULL");
    *desc = new lwTensorStruct;
    return LW_STATUS_SUCCESS;
  });
}

lwStatus_t lwSetTensor2dDescriptor(lwTensorDescriptor_t desc, lwDataType_t dtype, int64_t rows,
                                   int64_t cols, int64_t row_stride) {
  return guarded([&] {
    if (!desc) bad("desc is NULL");
    const int t = raw_enum(dtype);
    if (t != LW_FLOAT32 && t != LW_FLOAT64 && t != LW_INT32)
      bad("dtype: unknown data type " + std::to_string(t));
    if (rows < 0) bad("rows must be >= 0, got " + std::to_string(rows));
    if (cols < 1) bad("cols must be >= 1, got " + std::to_string(cols));
    if (row_stride < cols)
      bad("row_stride (" + std::to_string(row_stride) + ") must be >= cols (" +
          std::to_string(cols) + ")");
    desc->set = true;
    desc->dtype = dtype;
    desc->rows = rows;
    desc->cols = cols;
    desc->stride = row_stride;
    return LW_STATUS_SUCCESS;
  });
}

lwStatus_t lwGetTensor2dDescriptor(lwTensorDescriptor_t desc, lwDataType_t *dtype, int64_t *rows,
                                   int64_t *cols, int64_t *row_stride) {
  return guarded([&] {
    if (!desc) bad("desc is NULL");
    if (!desc->set) bad("desc was never set");
    if (dtype) *dtype = desc->dtype;
    if (rows) *rows = desc->rows;
    if (cols) *cols = desc->cols;
    if (row_stride) *row_stride = desc->stride;
    return LW_STATUS_SUCCESS;
  });
}

lwStatus_t lwDestroyTensorDescriptor(lwTensorDescriptor_t desc) {
  return guarded([&] {
    if (!desc) bad("desc is NULL");
    delete desc;
    return LW_STATUS_SUCCESS;
  });
}

lwStatus_t lwLinearForward(lwHandle_t handle, double alpha, lwTensorDescriptor_t xDesc,
                           const void *x, lwTensorDescriptor_t wDesc, const void *w,
                           lwTensorDescriptor_t bDesc, const void *b,
                           lwActivationMode_t activation, double beta, lwTensorDescriptor_t yDesc,
                           void *y) {
  return guarded([&] {
    check_handle(handle);
    auto *xd = tensor("x", xDesc, x);
    auto *wd = tensor("w", wDesc, w);
    if (!w) bad("w: data pointer is NULL");
    auto *yd = tensor("y", yDesc, y);
    want_float("x", xd);
    same_dtype("w", wd, "x", xd);
    same_dtype("y", yd, "x", xd);
    want_mode(activation);
    if (wd->cols != xd->cols) {
      std::ostringstream s;
      s << "w: shape " << shape_str(wd) << " does not chain with x " << shape_str(xd)
        << " (w must be (out_features, " << xd->cols << "))";
      bad(s.str());
    }
    want_shape("y", yd, xd->rows, wd->rows);
    if (b || bDesc) {
      auto *bd = tensor("b", bDesc, b);
      if (!b) bad("b: data pointer is NULL but bDesc is set");
      same_dtype("b", bd, "x", xd);
      want_vector("b", bd, wd->rows);
    }
    LinearForwardArgs a{dt(xd), xd->rows, xd->cols, wd->rows, x, xd->stride, w, wd->stride,
                        b, y, yd->stride, activation, alpha, beta};
    if (a.n == 0) return LW_STATUS_SUCCESS;
    return LW_DISPATCH(handle, linear_forward, a);
  });
}

lwStatus_t lwLinearBackwardData(lwHandle_t handle, double alpha, lwTensorDescriptor_t dyDesc,
                                const void *dy, lwTensorDescriptor_t wDesc, const void *w,
                                double beta, lwTensorDescriptor_t dxDesc, void *dx) {
  return guarded([&] {
    check_handle(handle);
    auto *dyd = tensor("dy", dyDesc, dy);
    auto *wd = tensor("w", wDesc, w);
    if (!w) bad("w: data pointer is NULL");
    auto *dxd = tensor("dx", dxDesc, dx);
    want_float("dy", dyd);
    same_dtype("w", wd, "dy", dyd);
    same_dtype("dx", dxd, "dy", dyd);
    if (wd->rows != dyd->cols) {
      std::ostringstream s;
      s << "w: shape " << shape_str(wd) << " does not chain with dy " << shape_str(dyd)
        << " (w must be (" << dyd->cols << ", in_features))";
      bad(s.str());
    }
    want_shape("dx", dxd, dyd->rows, wd->cols);
    LinearBackwardDataArgs a{dt(dyd), dyd->rows, wd->cols, wd->rows, dy, dyd->stride,
                             w, wd->stride, dx, dxd->stride, alpha, beta};
    if (a.n == 0) return LW_STATUS_SUCCESS;
    return LW_DISPATCH(handle, linear_backward_data, a);
  });
}

lwStatus_t lwLinearBackwardWeights(lwHandle_t handle, double alpha, lwTensorDescriptor_t dyDesc,
                                   const void *dy, lwTensorDescriptor_t xDesc, const void *x,
                                   double beta, lwTensorDescriptor_t dwDesc, void *dw,
                                   lwTensorDescriptor_t dbDesc, void *db) {
  return guarded([&] {
    check_handle(handle);
    const lwTensorStruct *dyd, *xd, *dwd;
    want_weight_grad_chain("dw", dyDesc, dy, xDesc, x, dwDesc, dw, &dyd, &xd, &dwd);
    if (db || dbDesc) {
      auto *dbd = tensor("db", dbDesc, db);
      if (!db) bad("db: data pointer is NULL but dbDesc is set");
      same_dtype("db", dbd, "dy", dyd);
      want_vector("db", dbd, dyd->cols);
    }
    LinearBackwardWeightsArgs a{dt(dyd), dyd->rows, xd->cols, dyd->cols, dy, dyd->stride,
                                x, xd->stride, dw, dwd->stride, db, alpha, beta};
    return LW_DISPATCH(handle, linear_backward_weights, a);  // n == 0 still scales dw by beta
  });
}

lwStatus_t lwActivationForward(lwHandle_t handle, lwActivationMode_t mode, double alpha,
                               lwTensorDescriptor_t xDesc, const void *x, double beta,
                               lwTensorDescriptor_t yDesc, void *y) {
  return guarded([&] {
    check_handle(handle);
    want_mode(mode);
    auto *xd = tensor("x", xDesc, x);
    auto *yd = tensor("y", yDesc, y);
    want_float("x", xd);
    same_dtype("y", yd, "x", xd);
    want_shape("y", yd, xd->rows, xd->cols);
    ActivationForwardArgs a{dt(xd), xd->rows, xd->cols, x, xd->stride, y, yd->stride,
                            mode, alpha, beta};
    if (a.rows == 0) return LW_STATUS_SUCCESS;
    return LW_DISPATCH(handle, activation_forward, a);
  });
}

lwStatus_t lwActivationBackward(lwHandle_t handle, lwActivationMode_t mode, double alpha,
                                lwTensorDescriptor_t yDesc, const void *y,
                                lwTensorDescriptor_t dyDesc, const void *dy,
                                lwTensorDescriptor_t xDesc, const void *x, double beta,
                                lwTensorDescriptor_t dxDesc, void *dx) {
  return guarded([&] {
    check_handle(handle);
    want_mode(mode);
    auto *yd = tensor("y", yDesc, y);
    auto *dyd = tensor("dy", dyDesc, dy);
    auto *dxd = tensor("dx", dxDesc, dx);
    want_float("y", yd);
    same_dtype("dy", dyd, "y", yd);
    same_dtype("dx", dxd, "y", yd);
    want_shape("dy", dyd, yd->rows, yd->cols);
    want_shape("dx", dxd, yd->rows, yd->cols);
    int64_t ldx = 0;
    if (x || xDesc) {
      auto *xd = tensor("x", xDesc, x);
      if (!x && xd->rows > 0) bad("x: data pointer is NULL but xDesc is set");
      same_dtype("x", xd, "y", yd);
      want_shape("x", xd, yd->rows, yd->cols);
      ldx = xd->stride;
    }
    ActivationBackwardArgs a{dt(yd), yd->rows, yd->cols, y, yd->stride, dy, dyd->stride,
                             x, ldx, dx, dxd->stride, mode, alpha, beta};
    if (a.rows == 0) return LW_STATUS_SUCCESS;
    return LW_DISPATCH(handle, activation_backward, a);
  });
}

lwStatus_t lwSoftmaxForward(lwHandle_t handle, double alpha, lwTensorDescriptor_t xDesc,
                            const void *x, double beta, lwTensorDescriptor_t yDesc, void *y) {
  return guarded([&] {
    check_handle(handle);
    auto *xd = tensor("x", xDesc, x);
    auto *yd = tensor("y", yDesc, y);
    want_float("x", xd);
    same_dtype("y", yd, "x", xd);
    want_shape("y", yd, xd->rows, xd->cols);
    SoftmaxArgs a{dt(xd), xd->rows, xd->cols, x, xd->stride, y, yd->stride, alpha, beta};
    if (a.rows == 0) return LW_STATUS_SUCCESS;
    return LW_DISPATCH(handle, softmax_forward, a);
  });
}

lwStatus_t lwLossForwardBackward(lwHandle_t handle, lwLossMode_t loss,
                                 lwTensorDescriptor_t predDesc, const void *pred,
                                 lwTensorDescriptor_t targetDesc, const void *target,
                                 double *loss_value, lwTensorDescriptor_t gradDesc, void *grad) {
  return guarded([&] {
    check_handle(handle);
    const int l = raw_enum(loss);
    if (l < LW_LOSS_QUADRATIC || l > LW_LOSS_SOFTMAX_CROSS_ENTROPY)
      bad("loss: unknown loss mode " + std::to_string(l));
    auto *pd = tensor("pred", predDesc, pred);
    auto *td = tensor("target", targetDesc, target);
    want_float("pred", pd);
    if (loss == LW_LOSS_SOFTMAX_CROSS_ENTROPY) {
      if (td->dtype != LW_INT32)
        bad(std::string("target: softmax cross-entropy takes int32 class ids, got ") +
            dtype_name(td->dtype));
      want_shape("target", td, pd->rows, 1);
    } else {
      same_dtype("target", td, "pred", pd);
      want_shape("target", td, pd->rows, pd->cols);
    }
    int64_t ldg = 0;
    if (grad || gradDesc) {
      auto *gd = tensor("grad", gradDesc, grad);
      if (!grad && gd->rows > 0) bad("grad: data pointer is NULL but gradDesc is set");
      same_dtype("grad", gd, "pred", pd);
      want_shape("grad", gd, pd->rows, pd->cols);
      ldg = gd->stride;
    }
    // Labels live in host memory on CPU handles: range-check them before any write.
    if (loss == LW_LOSS_SOFTMAX_CROSS_ENTROPY && handle->device == LW_DEVICE_CPU) {
      const int32_t *lab = static_cast<const int32_t *>(target);
      for (int64_t i = 0; i < pd->rows; ++i) {
        const int32_t v = lab[i * td->stride];
        if (v < 0 || v >= pd->cols) {
          std::ostringstream s;
          s << "target: class id " << v << " at row " << i << " is out of range [0, " << pd->cols
            << ")";
          bad(s.str());
        }
      }
    }
    LossArgs a{dt(pd), loss, pd->rows, pd->cols, pred, pd->stride, target, td->stride,
               grad, ldg, loss_value};
    if (a.rows == 0) {
      if (loss_value) *loss_value = 0.0;
      return LW_STATUS_SUCCESS;
    }
    return LW_DISPATCH(handle, loss_forward_backward, a);
  });
}

lwStatus_t lwSgdUpdate(lwHandle_t handle, double lr, double momentum, double weight_decay,
                       int nesterov, lwTensorDescriptor_t paramDesc, void *param, const void *grad,
                       void *velocity) {
  return guarded([&] {
    check_handle(handle);
    want_sgd(lr, momentum, weight_decay, nesterov);
    auto *pd = tensor("param", paramDesc, param);
    want_float("param", pd);
    if (!grad && pd->rows > 0) bad("grad: data pointer is NULL");
    if (momentum != 0 && !velocity && pd->rows > 0)
      bad("velocity: NULL, but momentum != 0 needs a velocity buffer");
    SgdArgs a{dt(pd), pd->rows, pd->cols, pd->stride, param, grad,
              momentum != 0 ? velocity : nullptr, lr, momentum, weight_decay, nesterov != 0};
    if (a.rows == 0) return LW_STATUS_SUCCESS;
    return LW_DISPATCH(handle, sgd_update, a);
  });
}

lwStatus_t lwLinearBackwardSgdUpdate(lwHandle_t handle, lwTensorDescriptor_t dyDesc, const void *dy,
                                     lwTensorDescriptor_t xDesc, const void *x, double lr,
                                     double momentum, double weight_decay, int nesterov,
                                     lwTensorDescriptor_t wDesc, void *w, void *w_velocity,
                                     lwTensorDescriptor_t bDesc, void *b, void *b_velocity,
                                     lwTensorDescriptor_t dxDesc, void *dx) {
  return guarded([&] {
    check_handle(handle);
    want_sgd(lr, momentum, weight_decay, nesterov);
    const lwTensorStruct *dyd, *xd, *wd;
    want_weight_grad_chain("w", dyDesc, dy, xDesc, x, wDesc, w, &dyd, &xd, &wd);
    if (momentum != 0 && !w_velocity) bad("w_velocity: NULL, but momentum != 0 needs a velocity buffer");
    if (b || bDesc) {
      auto *bd = tensor("b", bDesc, b);
      if (!b) bad("b: data pointer is NULL but bDesc is set");
      same_dtype("b", bd, "dy", dyd);
      want_vector("b", bd, dyd->cols);
      if (momentum != 0 && !b_velocity) bad("b_velocity: NULL, but momentum != 0 needs a velocity buffer");
    }
    int64_t lddx = 0;
    if (dx || dxDesc) {
      auto *dxd = tensor("dx", dxDesc, dx);
      if (!dx && dxd->rows > 0) bad("dx: data pointer is NULL but dxDesc is set");
      same_dtype("dx", dxd, "dy", dyd);
      want_shape("dx", dxd, dyd->rows, xd->cols);
      lddx = dxd->stride;
    }
    const bool mom = momentum != 0;
    LinearSgdArgs a{dt(dyd), dyd->rows, xd->cols, dyd->cols, dy, dyd->stride, x, xd->stride,
                    w, wd->stride, mom ? w_velocity : nullptr, b, (mom && b) ? b_velocity : nullptr,
                    (dx && dyd->rows > 0) ? dx : nullptr, lddx, lr, momentum, weight_decay, nesterov != 0};
    return LW_DISPATCH(handle, linear_backward_sgd, a);
  });
}

lwStatus_t lwBernoulliSample(lwHandle_t handle, uint64_t seed, uint64_t offset,
                             lwTensorDescriptor_t pDesc, const void *p, double p_scalar,
                             lwTensorDescriptor_t yDesc, void *y) {
  return guarded([&] {
    check_handle(handle);
    auto *yd = tensor("y", yDesc, y);
    want_float("y", yd);
    int64_t ldp = 0;
    if (p || pDesc) {
      auto *pd = tensor("p", pDesc, p);
      if (!p && pd->rows > 0) bad("p: data pointer is NULL but pDesc is set");
      same_dtype("p", pd, "y", yd);
      want_shape("p", pd, yd->rows, yd->cols);
      ldp = pd->stride;
    } else if (std::isnan(p_scalar)) {
      bad("p_scalar must not be NaN");
    }
    BernoulliArgs a{dt(yd), yd->rows, yd->cols, p, ldp, p_scalar, y, yd->stride, seed, offset};
    if (a.rows == 0) return LW_STATUS_SUCCESS;
    return LW_DISPATCH(handle, bernoulli_sample, a);
  });
}

}  // extern "C"

// ---- RBF units ----------------------------------------------------------------
// x (n, in), centers (units, in), gamma (1, units): described, one float dtype, chaining.
static void want_rbf_inputs(lwTensorDescriptor_t xDesc, const void *x, lwTensorDescriptor_t cDesc,
                            const void *centers, lwTensorDescriptor_t gammaDesc, const void *gamma,
                            const lwTensorStruct **xd, const lwTensorStruct **cd) {
  *xd = tensor("x", xDesc, x);
  *cd = tensor("centers", cDesc, centers);
  if (!centers) bad("centers: data pointer is NULL");
  auto *gd = tensor("gamma", gammaDesc, gamma);
  if (!gamma) bad("gamma: data pointer is NULL");
  want_float("x", *xd);
  same_dtype("centers", *cd, "x", *xd);
  same_dtype("gamma", gd, "x", *xd);
  if ((*cd)->rows < 1) bad("centers: needs at least one unit (row)");
  if ((*cd)->cols != (*xd)->cols) {
    std::ostringstream s;
    s << "centers: shape " << shape_str(*cd) << " does not chain with x " << shape_str(*xd)
      << " (centers must be (units, " << (*xd)->cols << "))";
    bad(s.str());
  }
  want_vector("gamma", gd, (*cd)->rows);
}

// An optional gradient output: both descriptor and pointer, or neither.
static const lwTensorStruct *optional_output(const char *name, lwTensorDescriptor_t d, void *p,
                                             const lwTensorStruct *ref, int64_t rows, int64_t cols) {
  if (!p && !d) return nullptr;
  auto *od = tensor(name, d, p);
  if (!p) bad(std::string(name) + ": data pointer is NULL but its descriptor is set");
  same_dtype(name, od, "x", ref);
  want_shape(name, od, rows, cols);
  return od;
}

extern "C" {

lwStatus_t lwRbfForward(lwHandle_t handle, double alpha, lwTensorDescriptor_t xDesc, const void *x,
                        lwTensorDescriptor_t cDesc, const void *centers,
                        lwTensorDescriptor_t gammaDesc, const void *gamma, double beta,
                        lwTensorDescriptor_t yDesc, void *y) {
  return guarded([&] {
    check_handle(handle);
    const lwTensorStruct *xd, *cd;
    want_rbf_inputs(xDesc, x, cDesc, centers, gammaDesc, gamma, &xd, &cd);
    auto *yd = tensor("y", yDesc, y);
    same_dtype("y", yd, "x", xd);
    want_shape("y", yd, xd->rows, cd->rows);
    want_finite("alpha", alpha);
    want_finite("beta", beta);
    RbfForwardArgs a{dt(xd), xd->rows, xd->cols, cd->rows, x, xd->stride, centers, cd->stride,
                     gamma, y, yd->stride, alpha, beta};
    if (a.n == 0) return LW_STATUS_SUCCESS;
    return LW_DISPATCH(handle, rbf_forward, a);
  });
}

lwStatus_t lwRbfBackward(lwHandle_t handle, double alpha, lwTensorDescriptor_t xDesc, const void *x,
                         lwTensorDescriptor_t cDesc, const void *centers,
                         lwTensorDescriptor_t gammaDesc, const void *gamma,
                         lwTensorDescriptor_t yDesc, const void *y, lwTensorDescriptor_t dyDesc,
                         const void *dy, double beta, lwTensorDescriptor_t dxDesc, void *dx,
                         lwTensorDescriptor_t dcDesc, void *dcenters,
                         lwTensorDescriptor_t dgammaDesc, void *dgamma) {
  return guarded([&] {
    check_handle(handle);
    const lwTensorStruct *xd, *cd;
    want_rbf_inputs(xDesc, x, cDesc, centers, gammaDesc, gamma, &xd, &cd);
    auto *yd = tensor("y", yDesc, y);
    auto *dyd = tensor("dy", dyDesc, dy);
    same_dtype("y", yd, "x", xd);
    same_dtype("dy", dyd, "x", xd);
    want_shape("y", yd, xd->rows, cd->rows);
    want_shape("dy", dyd, xd->rows, cd->rows);
    want_finite("alpha", alpha);
    want_finite("beta", beta);
    auto *dxd = optional_output("dx", dxDesc, dx, xd, xd->rows, xd->cols);
    auto *dcd = optional_output("dcenters", dcDesc, dcenters, xd, cd->rows, cd->cols);
    optional_output("dgamma", dgammaDesc, dgamma, xd, 1, cd->rows);
    RbfBackwardArgs a{dt(xd), xd->rows, xd->cols, cd->rows, x, xd->stride, centers, cd->stride,
                      gamma, y, yd->stride, dy, dyd->stride,
                      (dxd && xd->rows > 0) ? dx : nullptr, dxd ? dxd->stride : 0,
                      dcenters, dcd ? dcd->stride : 0, dgamma, alpha, beta};
    if (!a.dx && !a.dc && !a.dgamma) return LW_STATUS_SUCCESS;
    return LW_DISPATCH(handle, rbf_backward, a);
  });
}

}  // extern "C"

// ---- optimizers ----------------------------------------------------------------
// The descriptor, its validation, and lwOptimizerStep / lwLinearBackwardUpdate.

struct lwOptimizerStruct {
  lwOptimizerMode_t mode = LW_OPTIMIZER_SGD;
  lwOptimizerParams_t params{};
  int64_t t = 0;  // completed steps
};

namespace lw {
namespace {

const char *optimizer_name(lwOptimizerMode_t m) {
  switch (m) {
    case LW_OPTIMIZER_SGD: return "SGD";
    case LW_OPTIMIZER_ADAM: return "ADAM";
    case LW_OPTIMIZER_ADAMW: return "ADAMW";
    case LW_OPTIMIZER_RMSPROP: return "RMSPROP";
    case LW_OPTIMIZER_ADAGRAD: return "ADAGRAD";
  }
  return "unknown";
}

void want_optimizer_mode(const lwOptimizerMode_t &m) {
  const int v = raw_enum(m);
  if (v < LW_OPTIMIZER_SGD || v > LW_OPTIMIZER_ADAGRAD)
    bad("mode: unknown optimizer mode " + std::to_string(v));
}

const lwOptimizerStruct *optimizer(lwOptimizerDescriptor_t opt) {
  if (!opt) bad("opt: optimizer descriptor is NULL");
  return opt;
}

// name: finite and >= 0.
void want_nonnegative(const char *mode, const char *name, double v) {
  if (!std::isfinite(v) || v < 0) {
    std::ostringstream s;
    s << name << ": " << mode << " needs a finite value >= 0, got " << v;
    bad(s.str());
  }
}

void want_beta(const char *mode, const char *name, double v) {
  if (!std::isfinite(v) || v < 0 || v >= 1) {
    std::ostringstream s;
    s << name << ": " << mode << " needs 0 <= " << name << " < 1, got " << v;
    bad(s.str());
  }
}

void want_flag(const char *mode, const char *name, int v) {
  if (v != 0 && v != 1) {
    std::ostringstream s;
    s << name << ": " << mode << " needs 0 or 1, got " << v;
    bad(s.str());
  }
}

// The checks of lwSetOptimizerDescriptor: the fields `mode` uses, as torch.optim checks them.
void want_optimizer_params(lwOptimizerMode_t mode, const lwOptimizerParams_t &p) {
  const char *n = optimizer_name(mode);
  want_nonnegative(n, "lr", p.lr);
  want_nonnegative(n, "weight_decay", p.weight_decay);
  switch (mode) {
    case LW_OPTIMIZER_SGD:
      want_nonnegative(n, "momentum", p.momentum);
      want_flag(n, "nesterov", p.nesterov);
      if (p.nesterov && p.momentum <= 0) bad("nesterov: SGD with nesterov = 1 needs momentum > 0");
      break;
    case LW_OPTIMIZER_ADAM:
    case LW_OPTIMIZER_ADAMW:
      want_beta(n, "beta1", p.beta1);
      want_beta(n, "beta2", p.beta2);
      want_nonnegative(n, "eps", p.eps);
      break;
    case LW_OPTIMIZER_RMSPROP:
      want_nonnegative(n, "momentum", p.momentum);
      want_nonnegative(n, "alpha", p.alpha);
      want_nonnegative(n, "eps", p.eps);
      want_flag(n, "centered", p.centered);
      break;
    case LW_OPTIMIZER_ADAGRAD:
      want_nonnegative(n, "lr_decay", p.lr_decay);
      want_nonnegative(n, "initial_accumulator_value", p.initial_accumulator_value);
      want_nonnegative(n, "eps", p.eps);
      break;
  }
}

lwOptimizerParams_t optimizer_defaults(lwOptimizerMode_t mode) {
  lwOptimizerParams_t p{};
  switch (mode) {
    case LW_OPTIMIZER_SGD:
      p.lr = 1e-3;
      break;
    case LW_OPTIMIZER_ADAM:
    case LW_OPTIMIZER_ADAMW:
      p.lr = 1e-3;
      p.beta1 = 0.9;
      p.beta2 = 0.999;
      p.eps = 1e-8;
      p.weight_decay = mode == LW_OPTIMIZER_ADAMW ? 1e-2 : 0.0;
      break;
    case LW_OPTIMIZER_RMSPROP:
      p.lr = 1e-2;
      p.alpha = 0.99;
      p.eps = 1e-8;
      break;
    case LW_OPTIMIZER_ADAGRAD:
      p.lr = 1e-2;
      p.eps = 1e-10;
      break;
  }
  return p;
}

// `count` state pointers of a tensor with `rows` rows (name: "state" or "w_state"...).
void want_state(const char *name, void *const *state, int count, int64_t rows) {
  if (count == 0 || rows == 0) return;
  if (!state) {
    std::ostringstream s;
    s << name << ": NULL, but this optimizer needs " << count << " state buffer"
      << (count > 1 ? "s" : "");
    bad(s.str());
  }
  for (int k = 0; k < count; ++k)
    if (!state[k]) bad(std::string(name) + "[" + std::to_string(k) + "]: state buffer pointer is NULL");
}

OptimizerStepArgs optimizer_step_args(const lwOptimizerStruct *o, const lwTensorStruct *pd, void *param,
                                      const void *grad, void *const *state) {
  OptimizerStepArgs a{};
  a.dtype = dt(pd);
  a.rows = pd->rows;
  a.cols = pd->cols;
  a.ld = pd->stride;
  a.param = param;
  a.grad = grad;
  a.state_count = optimizer_state_count(o->mode, o->params);
  for (int k = 0; k < a.state_count; ++k) a.state[k] = state[k];
  a.mode = o->mode;
  a.coef = optimizer_coefficients(o->mode, o->params, o->t);
  return a;
}

}  // namespace
}  // namespace lw

extern "C" {

lwStatus_t lwOptimizerParamsDefault(lwOptimizerMode_t mode, lwOptimizerParams_t *params) {
  return guarded([&] {
    want_optimizer_mode(mode);
    if (!params) bad("params: output pointer is NULL");
    *params = optimizer_defaults(mode);
    return LW_STATUS_SUCCESS;
  });
}

lwStatus_t lwCreateOptimizerDescriptor(lwOptimizerDescriptor_t *opt) {
  return guarded([&] {
    if (!opt) bad("opt: output pointer is NULL");
    *opt = nullptr;
    auto *o = new lwOptimizerStruct;
    o->params = optimizer_defaults(LW_OPTIMIZER_SGD);
    *opt = o;
    return LW_STATUS_SUCCESS;
  });
}

lwStatus_t lwSetOptimizerDescriptor(lwOptimizerDescriptor_t opt, lwOptimizerMode_t mode,
                                    const lwOptimizerParams_t *params) {
  return guarded([&] {
    optimizer(opt);
    want_optimizer_mode(mode);
    if (!params) bad("params: pointer is NULL (lwOptimizerParamsDefault gives torch's defaults)");
    want_optimizer_params(mode, *params);
    opt->mode = mode;
    opt->params = *params;
    return LW_STATUS_SUCCESS;
  });
}

lwStatus_t lwGetOptimizerDescriptor(lwOptimizerDescriptor_t opt, lwOptimizerMode_t *mode,
                                    lwOptimizerParams_t *params) {
  return guarded([&] {
    optimizer(opt);
    if (mode) *mode = opt->mode;
    if (params) *params = opt->params;
    return LW_STATUS_SUCCESS;
  });
}

lwStatus_t lwDestroyOptimizerDescriptor(lwOptimizerDescriptor_t opt) {
  return guarded([&] {
    optimizer(opt);
    delete opt;
    return LW_STATUS_SUCCESS;
  });
}

lwStatus_t lwSetOptimizerStepCount(lwOptimizerDescriptor_t opt, int64_t t) {
  return guarded([&] {
    optimizer(opt);
    if (t < 0) bad("t: step count must be >= 0, got " + std::to_string(t));
    opt->t = t;
    return LW_STATUS_SUCCESS;
  });
}

lwStatus_t lwGetOptimizerStepCount(lwOptimizerDescriptor_t opt, int64_t *t) {
  return guarded([&] {
    optimizer(opt);
    if (!t) bad("t: output pointer is NULL");
    *t = opt->t;
    return LW_STATUS_SUCCESS;
  });
}

lwStatus_t lwOptimizerAdvanceStep(lwOptimizerDescriptor_t opt) {
  return guarded([&] {
    optimizer(opt);
    if (opt->t == INT64_MAX) bad("opt: step count would overflow int64");
    ++opt->t;
    return LW_STATUS_SUCCESS;
  });
}

lwStatus_t lwGetOptimizerStateCount(lwOptimizerDescriptor_t opt, int *count) {
  return guarded([&] {
    optimizer(opt);
    if (!count) bad("count: output pointer is NULL");
    *count = optimizer_state_count(opt->mode, opt->params);
    return LW_STATUS_SUCCESS;
  });
}

lwStatus_t lwOptimizerStep(lwHandle_t handle, lwOptimizerDescriptor_t opt,
                           lwTensorDescriptor_t paramDesc, void *param, const void *grad,
                           void *const *state) {
  return guarded([&] {
    check_handle(handle);
    const lwOptimizerStruct *o = optimizer(opt);
    auto *pd = tensor("param", paramDesc, param);
    want_float("param", pd);
    if (!grad && pd->rows > 0) bad("grad: data pointer is NULL");
    const int count = optimizer_state_count(o->mode, o->params);
    want_state("state", state, count, pd->rows);
    if (pd->rows == 0) return LW_STATUS_SUCCESS;
    const OptimizerStepArgs a = optimizer_step_args(o, pd, param, grad, state);
    return LW_DISPATCH(handle, optimizer_step, a);
  });
}

lwStatus_t lwLinearBackwardUpdate(lwHandle_t handle, lwOptimizerDescriptor_t opt,
                                  lwTensorDescriptor_t dyDesc, const void *dy,
                                  lwTensorDescriptor_t xDesc, const void *x,
                                  lwTensorDescriptor_t wDesc, void *w, void *const *w_state,
                                  lwTensorDescriptor_t bDesc, void *b, void *const *b_state,
                                  lwTensorDescriptor_t dxDesc, void *dx) {
  return guarded([&] {
    check_handle(handle);
    const lwOptimizerStruct *o = optimizer(opt);
    const lwTensorStruct *dyd, *xd, *wd;
    want_weight_grad_chain("w", dyDesc, dy, xDesc, x, wDesc, w, &dyd, &xd, &wd);
    const int count = optimizer_state_count(o->mode, o->params);
    want_state("w_state", w_state, count, wd->rows);
    if (b || bDesc) {
      auto *bd = tensor("b", bDesc, b);
      if (!b) bad("b: data pointer is NULL but bDesc is set");
      same_dtype("b", bd, "dy", dyd);
      want_vector("b", bd, dyd->cols);
      want_state("b_state", b_state, count, 1);
    }
    int64_t lddx = 0;
    if (dx || dxDesc) {
      auto *dxd = tensor("dx", dxDesc, dx);
      if (!dx && dxd->rows > 0) bad("dx: data pointer is NULL but dxDesc is set");
      same_dtype("dx", dxd, "dy", dyd);
      want_shape("dx", dxd, dyd->rows, xd->cols);
      lddx = dxd->stride;
    }
    void *dx_used = (dx && dyd->rows > 0) ? dx : nullptr;
    if (o->mode == LW_OPTIMIZER_SGD) {
      const lwOptimizerParams_t &p = o->params;
      const bool mom = count > 0 && w_state;  // w has dy's cols >= 1 rows, so w_state was checked
      LinearSgdArgs a{dt(dyd), dyd->rows, xd->cols, dyd->cols, dy, dyd->stride, x, xd->stride,
                      w, wd->stride, mom ? w_state[0] : nullptr, b, (mom && b) ? b_state[0] : nullptr,
                      dx_used, lddx, p.lr, p.momentum, p.weight_decay, p.nesterov != 0};
      return LW_DISPATCH(handle, linear_backward_sgd, a);
    }
    LinearUpdateArgs a{};
    a.dtype = dt(dyd);
    a.n = dyd->rows;
    a.in = xd->cols;
    a.out = dyd->cols;
    a.dy = dy;
    a.lddy = dyd->stride;
    a.x = x;
    a.ldx = xd->stride;
    a.w = w;
    a.ldw = wd->stride;
    a.b = b;
    a.state_count = count;
    for (int k = 0; k < count && w_state; ++k) a.w_state[k] = w_state[k];
    for (int k = 0; k < count && b; ++k) a.b_state[k] = b_state[k];
    a.dx = dx_used;
    a.lddx = lddx;
    a.mode = o->mode;
    a.coef = optimizer_coefficients(o->mode, o->params, o->t);
    return LW_DISPATCH(handle, linear_backward_update, a);
  });
}

}  // extern "C"
