// network.cpp -- lwNetwork_t: creation, parameter access, initialisation and
// inference. Everything is composed from the public primitives (lwLinearForward
// etc.), so a network runs on whichever device its handle drives and gives
// exactly the results of the same sequence of primitive calls.
#include "network.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "../common/rng.h"
#include "guard.h"

using lw::api::bad;
using lw::api::check;
using lw::api::checked_mul;
using lw::api::DeviceBuffer;
using lw::api::guarded;
using lw::api::raw_enum;

namespace {

constexpr int kMaxLayers = 1 << 16;
constexpr int64_t kMaxWidth = (int64_t{1} << 31) - 1;
constexpr int64_t kMaxMatrix = int64_t{1} << 40;
// Cap on the elements of one workspace buffer (rows x width), far above any real batch.
constexpr int64_t kMaxBatchElements = int64_t{1} << 46;

void check_net(lwNetwork_t net) {
  if (!net) bad("net is NULL");
}

void check_layer(lwNetwork_t net, int layer) {
  if (layer < 0 || layer >= net->nlayers)
    bad("layer: index " + std::to_string(layer) + " is out of range [0, " +
        std::to_string(net->nlayers) + ")");
}

lwTensorDescriptor_t new_desc() {
  lwTensorDescriptor_t d = nullptr;
  check(lwCreateTensorDescriptor(&d), "lwNetworkCreate");
  return d;
}

void destroy_descs(std::vector<lwTensorDescriptor_t> &v) {
  for (auto d : v)
    if (d) lwDestroyTensorDescriptor(d);
  v.clear();
}

void destroy_net(lwNetwork_t net) {
  destroy_descs(net->weight_desc);
  destroy_descs(net->bias_desc);
  destroy_descs(net->act_desc);
  if (net->label_desc) lwDestroyTensorDescriptor(net->label_desc);
  if (net->input_grad_desc) lwDestroyTensorDescriptor(net->input_grad_desc);
  if (net->output_desc) lwDestroyTensorDescriptor(net->output_desc);
  if (net->grads_desc) lwDestroyTensorDescriptor(net->grads_desc);
  delete net;
}

// RAII owner for a network under construction.
struct NetOwner {
  lwNetwork_t net = new lwNetworkStruct;
  ~NetOwner() {
    if (net) destroy_net(net);
  }
  lwNetwork_t release() { return std::exchange(net, nullptr); }
};

char *param_ptr(lwNetwork_t net, int64_t offset) {
  return static_cast<char *>(net->params.data()) + offset * static_cast<int64_t>(net->elem_bytes);
}

int64_t max_hidden_width(lwNetwork_t net) {
  int64_t m = 1;
  for (int i = 1; i < net->nlayers; ++i) m = std::max(m, net->sizes[i]);
  return m;
}

void want_rows(int64_t n) {
  if (n < 0) bad("n must be >= 0, got " + std::to_string(n));
}

}  // namespace

void lw::api::set_batch_descs(lwNetworkStruct *net, int64_t n) {
  for (int i = 0; i <= net->nlayers; ++i)
    check(lwSetTensor2dDescriptor(net->act_desc[i], net->dtype, n, net->sizes[i], net->sizes[i]),
          "network batch descriptor");
}

extern "C" {

lwStatus_t lwNetworkCreate(lwHandle_t handle, int nlayers, const int64_t *sizes,
                           const lwActivationMode_t *activations, const int *has_bias,
                           lwDataType_t dtype, lwNetwork_t *net) {
  return guarded([&] {
    if (!net) bad("net: output pointer is NULL");
    *net = nullptr;
    if (!handle) bad("handle is NULL");
    if (nlayers < 1 || nlayers > kMaxLayers)
      bad("nlayers must be in [1, " + std::to_string(kMaxLayers) + "], got " +
          std::to_string(nlayers));
    if (!sizes) bad("sizes is NULL (needs nlayers + 1 widths)");
    if (!activations) bad("activations is NULL (needs nlayers modes)");
    const int dt = raw_enum(dtype);
    if (dt != LW_FLOAT32 && dt != LW_FLOAT64)
      bad("dtype: a network is float32 or float64, got " + std::to_string(dt));
    for (int i = 0; i <= nlayers; ++i)
      if (sizes[i] < 1 || sizes[i] > kMaxWidth)
        bad("sizes[" + std::to_string(i) + "] must be in [1, 2^31 - 1], got " +
            std::to_string(sizes[i]));
    int64_t count = 0;
    for (int i = 0; i < nlayers; ++i) {
      const int a = raw_enum(activations[i]);
      if (a < LW_ACTIVATION_IDENTITY || a > LW_ACTIVATION_THRESHOLD)
        bad("activations[" + std::to_string(i) + "]: unknown mode " + std::to_string(a));
      count += checked_mul(sizes[i + 1], sizes[i], kMaxMatrix,
                           "layer " + std::to_string(i) + " weight") +
               sizes[i + 1];  // each term <= 2^40 + 2^31, at most 2^16 of them: no overflow
    }
    lwDevice_t device;
    check(lwGetDevice(handle, &device), "lwNetworkCreate");
    const size_t elem = dtype == LW_FLOAT32 ? 4 : 8;
    if (static_cast<uint64_t>(count) > SIZE_MAX / elem) bad("network: parameters exceed memory");

    NetOwner own;
    lwNetwork_t n = own.net;
    n->handle = handle;
    n->device = device;
    n->dtype = dtype;
    n->elem_bytes = elem;
    n->nlayers = nlayers;
    n->sizes.assign(sizes, sizes + nlayers + 1);
    n->activations.assign(activations, activations + nlayers);
    n->has_bias.resize(nlayers);
    int64_t off = 0;
    for (int i = 0; i < nlayers; ++i) {
      n->has_bias[i] = has_bias ? (has_bias[i] != 0) : 1;
      n->weight_offset.push_back(off);
      off += sizes[i + 1] * sizes[i];
      n->bias_offset.push_back(n->has_bias[i] ? off : -1);
      if (n->has_bias[i]) off += sizes[i + 1];
    }
    n->param_count = off;
    n->params = DeviceBuffer(device, static_cast<size_t>(off) * elem);
    for (int i = 0; i < nlayers; ++i) {
      n->weight_desc.push_back(new_desc());
      check(lwSetTensor2dDescriptor(n->weight_desc[i], dtype, sizes[i + 1], sizes[i], sizes[i]),
            "lwNetworkCreate");
      n->bias_desc.push_back(nullptr);
      if (n->has_bias[i]) {
        n->bias_desc[i] = new_desc();
        check(lwSetTensor2dDescriptor(n->bias_desc[i], dtype, 1, sizes[i + 1], sizes[i + 1]),
              "lwNetworkCreate");
      }
    }
    for (int i = 0; i <= nlayers; ++i) n->act_desc.push_back(new_desc());
    n->label_desc = new_desc();
    n->input_grad_desc = new_desc();
    n->output_desc = new_desc();
    *net = own.release();
    return LW_STATUS_SUCCESS;
  });
}

lwStatus_t lwNetworkDestroy(lwNetwork_t net) {
  return guarded([&] {
    check_net(net);
    destroy_net(net);
    return LW_STATUS_SUCCESS;
  });
}

lwStatus_t lwNetworkGetHandle(lwNetwork_t net, lwHandle_t *handle) {
  return guarded([&] {
    check_net(net);
    if (!handle) bad("handle: output pointer is NULL");
    *handle = net->handle;
    return LW_STATUS_SUCCESS;
  });
}

lwStatus_t lwNetworkGetLayerCount(lwNetwork_t net, int *nlayers) {
  return guarded([&] {
    check_net(net);
    if (!nlayers) bad("nlayers: output pointer is NULL");
    *nlayers = net->nlayers;
    return LW_STATUS_SUCCESS;
  });
}

lwStatus_t lwNetworkGetSizes(lwNetwork_t net, int64_t *sizes) {
  return guarded([&] {
    check_net(net);
    if (!sizes) bad("sizes: output pointer is NULL");
    std::copy(net->sizes.begin(), net->sizes.end(), sizes);
    return LW_STATUS_SUCCESS;
  });
}

lwStatus_t lwNetworkGetActivation(lwNetwork_t net, int layer, lwActivationMode_t *activation) {
  return guarded([&] {
    check_net(net);
    check_layer(net, layer);
    if (!activation) bad("activation: output pointer is NULL");
    *activation = net->activations[layer];
    return LW_STATUS_SUCCESS;
  });
}

lwStatus_t lwNetworkGetDataType(lwNetwork_t net, lwDataType_t *dtype) {
  return guarded([&] {
    check_net(net);
    if (!dtype) bad("dtype: output pointer is NULL");
    *dtype = net->dtype;
    return LW_STATUS_SUCCESS;
  });
}

lwStatus_t lwNetworkGetLayer(lwNetwork_t net, int layer, lwTensorDescriptor_t *wDesc, void **w,
                             lwTensorDescriptor_t *bDesc, void **b) {
  return guarded([&] {
    check_net(net);
    check_layer(net, layer);
    if (wDesc) *wDesc = net->weight_desc[layer];
    if (w) *w = param_ptr(net, net->weight_offset[layer]);
    const bool hb = net->has_bias[layer] != 0;
    if (bDesc) *bDesc = hb ? net->bias_desc[layer] : nullptr;
    if (b) *b = hb ? param_ptr(net, net->bias_offset[layer]) : nullptr;
    return LW_STATUS_SUCCESS;
  });
}

lwStatus_t lwNetworkInitUniform(lwNetwork_t net, uint64_t seed) {
  return guarded([&] {
    check_net(net);
    for (int i = 0; i < net->nlayers; ++i) {
      const int64_t in = net->sizes[i], out = net->sizes[i + 1];
      const int64_t count = out * in + (net->has_bias[i] ? out : 0);
      const double r = 1.0 / std::sqrt(static_cast<double>(in));
      const uint64_t key = seed + static_cast<uint64_t>(i);
      // Host staging, then one copy: parameters are contiguous per layer (W then b).
      std::vector<char> host(static_cast<size_t>(count) * net->elem_bytes);
      for (int64_t k = 0; k < count; ++k) {
        const double v = (2.0 * lw::uniform01(key, static_cast<uint64_t>(k)) - 1.0) * r;
        if (net->dtype == LW_FLOAT32)
          reinterpret_cast<float *>(host.data())[k] = static_cast<float>(v);
        else
          reinterpret_cast<double *>(host.data())[k] = v;
      }
      lw::api::copy_from_host(net->device, param_ptr(net, net->weight_offset[i]), host.data(),
                              host.size());
    }
    return LW_STATUS_SUCCESS;
  });
}

lwStatus_t lwNetworkForward(lwNetwork_t net, int64_t n, const void *x, void *y) {
  return guarded([&] {
    check_net(net);
    want_rows(n);
    if (n > 0 && !x) bad("x: data pointer is NULL");
    if (n > 0 && !y) bad("y: data pointer is NULL");
    if (n == 0) return LW_STATUS_SUCCESS;
    const int L = net->nlayers;
    const int64_t width = max_hidden_width(net);
    for (int i = 0; i <= L; ++i) checked_mul(n, net->sizes[i], kMaxBatchElements, "n x layer width");
    if (L > 1 && n > net->forward_rows) {
      const int64_t per = checked_mul(n, width, kMaxBatchElements, "forward workspace");
      net->forward_work = DeviceBuffer();  // free before allocating the larger one
      net->forward_work = DeviceBuffer(net->device, 2 * static_cast<size_t>(per) * net->elem_bytes);
      net->forward_rows = n;
    }
    lw::api::set_batch_descs(net, n);
    // Hidden outputs alternate between the two halves of the workspace (none for one layer).
    char *ping = static_cast<char *>(net->forward_work.data());
    char *pong = L > 1 ? ping + static_cast<size_t>(n * width) * net->elem_bytes : nullptr;
    const void *in = x;
    for (int i = 0; i < L; ++i) {
      void *out = (i == L - 1) ? y : (i % 2 == 0 ? ping : pong);
      void *b = net->has_bias[i] ? param_ptr(net, net->bias_offset[i]) : nullptr;
      check(lwLinearForward(net->handle, 1.0, net->act_desc[i], in, net->weight_desc[i],
                            param_ptr(net, net->weight_offset[i]), net->bias_desc[i], b,
                            net->activations[i], 0.0, net->act_desc[i + 1], out),
            "lwNetworkForward: layer " + std::to_string(i));
      in = out;
    }
    return LW_STATUS_SUCCESS;
  });
}

}  // extern "C"
