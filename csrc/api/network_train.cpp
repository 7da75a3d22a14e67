// network_train.cpp -- lwNetworkTrainStep and its options: forward, loss,
// backward and optimizer update of a whole lwNetwork_t in one call, composed
// from the public primitives (see layerwise.h for the exact sequence), with
// every buffer owned by the network so that repeated steps allocate nothing.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "guard.h"
#include "network.h"

using lw::api::bad;
using lw::api::check;
using lw::api::checked_mul;
using lw::api::DeviceBuffer;
using lw::api::failure;
using lw::api::guarded;
using lw::api::param_block_ptr;
using lw::api::raw_enum;

namespace {

constexpr int64_t kMaxBatchElements = int64_t{1} << 46;

void check_net(lwNetwork_t net) {
  if (!net) bad("net is NULL");
}

int64_t max_output_width(lwNetwork_t net) {
  int64_t m = 1;
  for (int i = 1; i <= net->nlayers; ++i) m = std::max(m, net->sizes[i]);
  return m;
}

// Grows the per-batch training buffers to n rows (no-op when they are big enough).
void ensure_train_workspace(lwNetwork_t net, int64_t n) {
  const size_t elem = net->elem_bytes;
  if (n > net->train_rows) {
    int64_t acts = 0;
    for (int i = 1; i <= net->nlayers; ++i)
      acts += checked_mul(n, net->sizes[i], kMaxBatchElements, "training activations");
    const int64_t grad = checked_mul(n, max_output_width(net), kMaxBatchElements, "training gradients");
    net->train_acts = DeviceBuffer();
    net->train_grads = DeviceBuffer();
    net->train_acts = DeviceBuffer(net->device, static_cast<size_t>(acts) * elem);
    net->train_grads = DeviceBuffer(net->device, 2 * static_cast<size_t>(grad) * elem);
    net->train_rows = n;
  }
  if (net->keep_input_grad && n > net->input_grad_rows) {
    const int64_t count = checked_mul(n, net->sizes[0], kMaxBatchElements, "input gradient");
    net->input_grad = DeviceBuffer();
    net->input_grad = DeviceBuffer(net->device, static_cast<size_t>(count) * elem);
    net->input_grad_rows = n;
  }
}

// (Re)creates the optimizer state when the descriptor's layout differs from the held one.
void ensure_optimizer_state(lwNetwork_t net, lwOptimizerMode_t mode, const lwOptimizerParams_t &p, int count) {
  const double init = mode == LW_OPTIMIZER_ADAGRAD ? p.initial_accumulator_value : 0.0;
  if (net->opt_state_count == count && net->opt_state_mode == static_cast<int>(mode) &&
      net->opt_state_init == init)
    return;
  const size_t bytes = static_cast<size_t>(net->param_count) * net->elem_bytes;
  if (count > 0 && bytes > SIZE_MAX / static_cast<size_t>(count)) bad("optimizer state exceeds memory");
  DeviceBuffer fresh(net->device, bytes * static_cast<size_t>(count));
  if (init != 0.0 && count > 0) {  // ADAGRAD: its single buffer starts at the initial value
    std::vector<char> host(bytes);
    for (int64_t k = 0; k < net->param_count; ++k) {
      if (net->dtype == LW_FLOAT32)
        reinterpret_cast<float *>(host.data())[k] = static_cast<float>(init);
      else
        reinterpret_cast<double *>(host.data())[k] = init;
    }
    lw::api::copy_from_host(net->device, fresh.data(), host.data(), bytes);
  }
  if (net->opt_state_viewed && net->opt_state.data()) net->retired_opt_state.push_back(std::move(net->opt_state));
  net->opt_state = std::move(fresh);
  net->opt_state_viewed = false;
  net->opt_state_count = count;
  net->opt_state_mode = static_cast<int>(mode);
  net->opt_state_init = init;
}

// The optimizer's mode, hyperparameters and state count (validated descriptor).
struct OptimizerInfo {
  lwOptimizerMode_t mode;
  lwOptimizerParams_t params;
  int count = 0;
};

OptimizerInfo optimizer_info(lwOptimizerDescriptor_t opt) {
  if (!opt) bad("opt: optimizer descriptor is NULL");
  OptimizerInfo o;
  check(lwGetOptimizerDescriptor(opt, &o.mode, &o.params), "opt");
  check(lwGetOptimizerStateCount(opt, &o.count), "opt");
  return o;
}

// Checks the arguments every batch call shares; false when n == 0 (nothing to do).
// loss by reference: an out-of-range value is read through raw_enum (memcpy), never loaded as the enum.
bool check_batch(lwNetwork_t net, int64_t n, const void *x, const void *target, const lwLossMode_t &loss) {
  check_net(net);
  if (n < 0) bad("n must be >= 0, got " + std::to_string(n));
  const int l = raw_enum(loss);
  if (l < LW_LOSS_QUADRATIC || l > LW_LOSS_SOFTMAX_CROSS_ENTROPY)
    bad("loss: unknown loss mode " + std::to_string(l));
  if (n > 0 && !x) bad("x: data pointer is NULL");
  if (n > 0 && !target) bad("target: data pointer is NULL");
  if (n == 0) return false;
  for (int i = 0; i <= net->nlayers; ++i) checked_mul(n, net->sizes[i], kMaxBatchElements, "n x layer width");
  return true;
}

void ensure_grads(lwNetwork_t net) {
  if (!net->grads.data())
    net->grads = DeviceBuffer(net->device, static_cast<size_t>(net->param_count) * net->elem_bytes);
}

// The state pointers of the tensor at parameter offset `offset` (count of them).
void state_ptrs(lwNetwork_t net, int64_t offset, void **out) {
  for (int s = 0; s < net->opt_state_count; ++s)
    out[s] = param_block_ptr(net, net->opt_state, s * net->param_count + offset);
}

// Sum of squares of `count` gradient elements at `ptr` (host copy first on CUDA).
double sum_squares(lwNetwork_t net, const void *ptr, int64_t count, std::vector<char> &staging) {
  const void *host = ptr;
  if (net->device != LW_DEVICE_CPU) {
    staging.resize(static_cast<size_t>(count) * net->elem_bytes);
    lw::api::copy_to_host(net->device, staging.data(), ptr, staging.size());
    host = staging.data();
  }
  double s = 0;
  for (int64_t k = 0; k < count; ++k) {
    const double v = net->dtype == LW_FLOAT32 ? static_cast<const float *>(host)[k]
                                              : static_cast<const double *>(host)[k];
    s += v * v;
  }
  return s;
}


// Forward, loss and backward of one batch (arguments checked, n > 0). With `fused_sgd`
// (an SGD descriptor) each layer is updated by lwLinearBackwardUpdate as the sweep passes
// it; without, dW and db go to net->grads and nothing is updated.
void forward_backward(lwNetwork_t net, int64_t n, const void *x, const void *target, lwLossMode_t loss,
                      lwOptimizerDescriptor_t fused_sgd, int state_count, double *loss_value, const char *api) {
  const int L = net->nlayers;
  ensure_train_workspace(net, n);
  if (!fused_sgd) ensure_grads(net);
  lw::api::set_batch_descs(net, n);
  lwTensorDescriptor_t target_desc = net->act_desc[L];
  if (loss == LW_LOSS_SOFTMAX_CROSS_ENTROPY) {
    check(lwSetTensor2dDescriptor(net->label_desc, LW_INT32, n, 1, 1), "target");
    target_desc = net->label_desc;
  }
  net->input_grad_valid_rows = -1;
  net->last_output = nullptr;
  const std::string where0 = api;

  // Forward: acts[i] holds layer i's output a_{i+1} (n, sizes[i + 1]).
  std::vector<char *> a(L + 1);
  a[0] = const_cast<char *>(static_cast<const char *>(x));
  char *p = static_cast<char *>(net->train_acts.data());
  for (int i = 0; i < L; ++i) {
    a[i + 1] = p;
    p += static_cast<size_t>(n * net->sizes[i + 1]) * net->elem_bytes;
  }
  for (int i = 0; i < L; ++i)
    check(lwLinearForward(net->handle, 1.0, net->act_desc[i], a[i], net->weight_desc[i],
                          param_block_ptr(net, net->params, net->weight_offset[i]), net->bias_desc[i],
                          net->has_bias[i] ? param_block_ptr(net, net->params, net->bias_offset[i]) : nullptr,
                          net->activations[i], 0.0, net->act_desc[i + 1], a[i + 1]),
          where0 + ": forward, layer " + std::to_string(i));

  char *g_cur = static_cast<char *>(net->train_grads.data());
  char *g_next = g_cur + static_cast<size_t>(n * max_output_width(net)) * net->elem_bytes;
  check(lwLossForwardBackward(net->handle, loss, net->act_desc[L], a[L], target_desc, target, loss_value,
                              net->act_desc[L], g_cur),
        where0 + ": loss");

  if (net->gradient_norms && !fused_sgd) net->last_norms.assign(L, 0.0);
  std::vector<char> staging;
  std::vector<void *> w_state(std::max(state_count, 1)), b_state(std::max(state_count, 1));
  for (int i = L - 1; i >= 0; --i) {
    lwTensorDescriptor_t out_desc = net->act_desc[i + 1], in_desc = net->act_desc[i];
    if (net->activations[i] != LW_ACTIVATION_IDENTITY)
      check(lwActivationBackward(net->handle, net->activations[i], 1.0, out_desc, a[i + 1], out_desc, g_cur,
                                 nullptr, nullptr, 0.0, out_desc, g_cur),
            where0 + ": activation backward, layer " + std::to_string(i));
    void *dx = nullptr;
    lwTensorDescriptor_t dx_desc = nullptr;
    if (i > 0) {
      dx = g_next;
      dx_desc = in_desc;
    } else if (net->keep_input_grad) {
      dx = net->input_grad.data();
      dx_desc = in_desc;
    }
    char *w = param_block_ptr(net, net->params, net->weight_offset[i]);
    const bool hb = net->has_bias[i] != 0;
    char *b = hb ? param_block_ptr(net, net->params, net->bias_offset[i]) : nullptr;
    const std::string where = where0 + ": layer " + std::to_string(i);
    if (fused_sgd) {
      state_ptrs(net, net->weight_offset[i], w_state.data());
      if (hb) state_ptrs(net, net->bias_offset[i], b_state.data());
      check(lwLinearBackwardUpdate(net->handle, fused_sgd, out_desc, g_cur, in_desc, a[i], net->weight_desc[i], w,
                                   w_state.data(), net->bias_desc[i], b, hb ? b_state.data() : nullptr, dx_desc,
                                   dx),
            where);
    } else {
      char *dw = param_block_ptr(net, net->grads, net->weight_offset[i]);
      char *db = hb ? param_block_ptr(net, net->grads, net->bias_offset[i]) : nullptr;
      if (dx)
        check(lwLinearBackwardData(net->handle, 1.0, out_desc, g_cur, net->weight_desc[i], w, 0.0, dx_desc, dx),
              where);
      check(lwLinearBackwardWeights(net->handle, 1.0, out_desc, g_cur, in_desc, a[i], 0.0, net->weight_desc[i], dw,
                                    net->bias_desc[i], db),
            where);
      if (net->gradient_norms) {
        double s = sum_squares(net, dw, net->sizes[i] * net->sizes[i + 1], staging);
        if (hb) s += sum_squares(net, db, net->sizes[i + 1], staging);
        net->last_norms[i] = std::sqrt(s);
      }
    }
    std::swap(g_cur, g_next);
  }
  if (!fused_sgd) net->grads_computed = true;
  net->last_output = a[L];
  check(lwSetTensor2dDescriptor(net->output_desc, net->dtype, n, net->sizes[L], net->sizes[L]), api);
  if (net->keep_input_grad) {
    net->input_grad_valid_rows = n;
    check(lwSetTensor2dDescriptor(net->input_grad_desc, net->dtype, n, net->sizes[0], net->sizes[0]), api);
  }
}

// Steps every tensor from net->grads with the descriptor (state ensured), then advances t.
void apply_gradients(lwNetwork_t net, lwOptimizerDescriptor_t opt, const OptimizerInfo &o, const char *api) {
  ensure_optimizer_state(net, o.mode, o.params, o.count);
  std::vector<void *> state(std::max(o.count, 1));
  const std::string where0 = api;
  for (int i = 0; i < net->nlayers; ++i) {
    const std::string where = where0 + ": layer " + std::to_string(i);
    state_ptrs(net, net->weight_offset[i], state.data());
    check(lwOptimizerStep(net->handle, opt, net->weight_desc[i], param_block_ptr(net, net->params, net->weight_offset[i]),
                          param_block_ptr(net, net->grads, net->weight_offset[i]), state.data()),
          where);
    if (net->has_bias[i]) {
      state_ptrs(net, net->bias_offset[i], state.data());
      check(lwOptimizerStep(net->handle, opt, net->bias_desc[i], param_block_ptr(net, net->params, net->bias_offset[i]),
                            param_block_ptr(net, net->grads, net->bias_offset[i]), state.data()),
            where);
    }
  }
  check(lwOptimizerAdvanceStep(opt), api);
}

}  // namespace

extern "C" {

lwStatus_t lwNetworkTrainStep(lwNetwork_t net, int64_t n, const void *x, const void *target,
                              lwLossMode_t loss, lwOptimizerDescriptor_t opt, double *loss_value) {
  return guarded([&] {
    check_net(net);
    const OptimizerInfo o = optimizer_info(opt);
    if (!check_batch(net, n, x, target, loss)) {
      if (loss_value) *loss_value = 0.0;
      return LW_STATUS_SUCCESS;
    }
    const char *api = "lwNetworkTrainStep";
    if (o.mode == LW_OPTIMIZER_SGD && !net->gradient_norms) {
      ensure_optimizer_state(net, o.mode, o.params, o.count);
      forward_backward(net, n, x, target, loss, opt, o.count, loss_value, api);
      check(lwOptimizerAdvanceStep(opt), api);
    } else {  // exactly lwNetworkComputeGradients then lwNetworkApplyGradients
      forward_backward(net, n, x, target, loss, nullptr, o.count, loss_value, api);
      apply_gradients(net, opt, o, api);
    }
    return LW_STATUS_SUCCESS;
  });
}

lwStatus_t lwNetworkComputeGradients(lwNetwork_t net, int64_t n, const void *x, const void *target,
                                     lwLossMode_t loss, double *loss_value) {
  return guarded([&] {
    if (!check_batch(net, n, x, target, loss)) {
      // The gradient of an empty batch is zero: a data-parallel rank whose slice of a
      // global batch is empty then adds nothing to the allreduce and may still apply.
      ensure_grads(net);
      net->grads.zero();
      net->grads_computed = true;
      if (loss_value) *loss_value = 0.0;
      return LW_STATUS_SUCCESS;
    }
    forward_backward(net, n, x, target, loss, nullptr, 0, loss_value, "lwNetworkComputeGradients");
    return LW_STATUS_SUCCESS;
  });
}

lwStatus_t lwNetworkGetGradients(lwNetwork_t net, lwTensorDescriptor_t *desc, void **flat, int64_t *count) {
  return guarded([&] {
    check_net(net);
    if (!flat) bad("flat: output pointer is NULL");
    if (!count) bad("count: output pointer is NULL");
    ensure_grads(net);
    if (desc) {
      if (!net->grads_desc) check(lwCreateTensorDescriptor(&net->grads_desc), "lwNetworkGetGradients");
      check(lwSetTensor2dDescriptor(net->grads_desc, net->dtype, 1, net->param_count, net->param_count),
            "lwNetworkGetGradients");
      *desc = net->grads_desc;
    }
    *flat = net->grads.data();
    *count = net->param_count;
    return LW_STATUS_SUCCESS;
  });
}

lwStatus_t lwNetworkApplyGradients(lwNetwork_t net, lwOptimizerDescriptor_t opt) {
  return guarded([&] {
    check_net(net);
    const OptimizerInfo o = optimizer_info(opt);
    if (!net->grads_computed)
      failure(LW_STATUS_NOT_SUPPORTED, "lwNetworkApplyGradients: no lwNetworkComputeGradients has run");
    apply_gradients(net, opt, o, "lwNetworkApplyGradients");
    return LW_STATUS_SUCCESS;
  });
}

lwStatus_t lwNetworkGetOutput(lwNetwork_t net, lwTensorDescriptor_t *yDesc, const void **y) {
  return guarded([&] {
    check_net(net);
    if (!y) bad("y: output pointer is NULL");
    if (!net->last_output)
      failure(LW_STATUS_NOT_SUPPORTED, "lwNetworkGetOutput: no training step or gradient computation has run");
    if (yDesc) *yDesc = net->output_desc;
    *y = net->last_output;
    return LW_STATUS_SUCCESS;
  });
}

lwStatus_t lwNetworkPrepareOptimizerState(lwNetwork_t net, lwOptimizerDescriptor_t opt) {
  return guarded([&] {
    check_net(net);
    const OptimizerInfo o = optimizer_info(opt);
    ensure_optimizer_state(net, o.mode, o.params, o.count);
    return LW_STATUS_SUCCESS;
  });
}

lwStatus_t lwNetworkGetOptimizerState(lwNetwork_t net, int layer, int tensor, int slot, lwTensorDescriptor_t *desc,
                                      void **state) {
  return guarded([&] {
    check_net(net);
    if (layer < 0 || layer >= net->nlayers)
      bad("layer: index " + std::to_string(layer) + " is out of range [0, " + std::to_string(net->nlayers) + ")");
    if (tensor != 0 && tensor != 1) bad("tensor: 0 (weight) or 1 (bias), got " + std::to_string(tensor));
    if (tensor == 1 && !net->has_bias[layer]) bad("tensor: layer " + std::to_string(layer) + " has no bias");
    if (!state) bad("state: output pointer is NULL");
    if (net->opt_state_count < 0)
      failure(LW_STATUS_NOT_SUPPORTED,
              "lwNetworkGetOptimizerState: no optimizer state yet (lwNetworkPrepareOptimizerState creates it)");
    if (slot < 0 || slot >= net->opt_state_count)
      bad("slot: index " + std::to_string(slot) + " is out of range [0, " + std::to_string(net->opt_state_count) +
          ") for the held optimizer state");
    const int64_t offset = tensor == 0 ? net->weight_offset[layer] : net->bias_offset[layer];
    if (desc) *desc = tensor == 0 ? net->weight_desc[layer] : net->bias_desc[layer];
    *state = param_block_ptr(net, net->opt_state, slot * net->param_count + offset);
    net->opt_state_viewed = true;
    return LW_STATUS_SUCCESS;
  });
}

lwStatus_t lwNetworkResetOptimizerState(lwNetwork_t net) {
  return guarded([&] {
    check_net(net);
    if (net->opt_state_viewed && net->opt_state.data()) net->retired_opt_state.push_back(std::move(net->opt_state));
    net->opt_state = DeviceBuffer();
    net->opt_state_viewed = false;
    net->opt_state_count = -1;
    net->opt_state_mode = -1;
    return LW_STATUS_SUCCESS;
  });
}

lwStatus_t lwNetworkSetOption(lwNetwork_t net, lwNetworkOption_t option, int value) {
  return guarded([&] {
    check_net(net);
    if (value != 0 && value != 1) bad("value must be 0 or 1, got " + std::to_string(value));
    switch (raw_enum(option)) {
      case LW_NETWORK_INPUT_GRADIENT: net->keep_input_grad = value != 0; break;
      case LW_NETWORK_GRADIENT_NORMS: net->gradient_norms = value != 0; break;
      default: bad("option: unknown network option " + std::to_string(raw_enum(option)));
    }
    return LW_STATUS_SUCCESS;
  });
}

lwStatus_t lwNetworkGetOption(lwNetwork_t net, lwNetworkOption_t option, int *value) {
  return guarded([&] {
    check_net(net);
    if (!value) bad("value: output pointer is NULL");
    switch (raw_enum(option)) {
      case LW_NETWORK_INPUT_GRADIENT: *value = net->keep_input_grad; break;
      case LW_NETWORK_GRADIENT_NORMS: *value = net->gradient_norms; break;
      default: bad("option: unknown network option " + std::to_string(raw_enum(option)));
    }
    return LW_STATUS_SUCCESS;
  });
}

lwStatus_t lwNetworkGetInputGradient(lwNetwork_t net, lwTensorDescriptor_t *dxDesc, const void **dx) {
  return guarded([&] {
    check_net(net);
    if (net->input_grad_valid_rows < 0)
      failure(LW_STATUS_NOT_SUPPORTED,
              "lwNetworkGetInputGradient: no training step with LW_NETWORK_INPUT_GRADIENT on has run");
    if (dxDesc) *dxDesc = net->input_grad_desc;
    if (dx) *dx = net->input_grad.data();
    return LW_STATUS_SUCCESS;
  });
}

lwStatus_t lwNetworkGetGradientNorms(lwNetwork_t net, double *norms) {
  return guarded([&] {
    check_net(net);
    if (!norms) bad("norms: output pointer is NULL");
    if (net->last_norms.empty())
      failure(LW_STATUS_NOT_SUPPORTED,
              "lwNetworkGetGradientNorms: no training step with LW_NETWORK_GRADIENT_NORMS on has run");
    std::copy(net->last_norms.begin(), net->last_norms.end(), norms);
    return LW_STATUS_SUCCESS;
  });
}

}  // extern "C"
