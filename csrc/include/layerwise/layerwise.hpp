/*
 * layerwise.hpp -- a small header-only C++17 wrapper over layerwise.h.
 *
 * RAII owners for handles, tensor descriptors, optimizer descriptors and
 * networks; every failing C call throws lw::Error, which carries the status
 * and lwGetLastErrorMessage(). The C objects stay reachable through get(), so
 * the whole C API remains usable alongside the wrapper.
 *
 *   lw::Handle handle(LW_DEVICE_CPU);
 *   lw::Network net = lw::Network::load(handle, "model.safetensors");
 *   net.forward(n, x, y);
 */
#ifndef LAYERWISE_LAYERWISE_HPP_
#define LAYERWISE_LAYERWISE_HPP_

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "layerwise/layerwise.h"

namespace lw {

class Error : public std::runtime_error {
 public:
  Error(lwStatus_t status, const std::string &what)
      : std::runtime_error(what + ": " + lwGetErrorString(status) + ": " + lwGetLastErrorMessage()),
        status_(status) {}
  lwStatus_t status() const noexcept { return status_; }

 private:
  lwStatus_t status_;
};

// Throws lw::Error unless status is LW_STATUS_SUCCESS; `what` names the call.
inline void check(lwStatus_t status, const char *what) {
  if (status != LW_STATUS_SUCCESS) throw Error(status, what);
}

namespace detail {
// A move-only owner of a C object pointer with a destroy function.
template <typename T, lwStatus_t (*Destroy)(T)>
class Owner {
 public:
  Owner() = default;
  explicit Owner(T p) : p_(p) {}
  ~Owner() { reset(); }
  Owner(Owner &&o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  Owner &operator=(Owner &&o) noexcept {
    if (this != &o) {
      reset();
      p_ = std::exchange(o.p_, nullptr);
    }
    return *this;
  }
  Owner(const Owner &) = delete;
  Owner &operator=(const Owner &) = delete;
  T get() const noexcept { return p_; }
  void reset() noexcept {
    if (p_) (void)Destroy(p_);
    p_ = nullptr;
  }

 private:
  T p_ = nullptr;
};
}  // namespace detail

class Handle {
 public:
  explicit Handle(lwDevice_t device = LW_DEVICE_CPU) {
    lwHandle_t h = nullptr;
    check(lwCreate(&h, device), "lwCreate");
    h_ = detail::Owner<lwHandle_t, lwDestroy>(h);
  }
  lwHandle_t get() const noexcept { return h_.get(); }
  lwDevice_t device() const {
    lwDevice_t d;
    check(lwGetDevice(get(), &d), "lwGetDevice");
    return d;
  }
  void set_num_threads(int n) { check(lwSetNumThreads(get(), n), "lwSetNumThreads"); }

 private:
  detail::Owner<lwHandle_t, lwDestroy> h_;
};

class TensorDescriptor {
 public:
  TensorDescriptor() {
    lwTensorDescriptor_t d = nullptr;
    check(lwCreateTensorDescriptor(&d), "lwCreateTensorDescriptor");
    d_ = detail::Owner<lwTensorDescriptor_t, lwDestroyTensorDescriptor>(d);
  }
  // A dense (row_stride = cols when < 0) 2-D descriptor.
  TensorDescriptor(lwDataType_t dtype, int64_t rows, int64_t cols, int64_t row_stride = -1) : TensorDescriptor() {
    set(dtype, rows, cols, row_stride);
  }
  void set(lwDataType_t dtype, int64_t rows, int64_t cols, int64_t row_stride = -1) {
    check(lwSetTensor2dDescriptor(get(), dtype, rows, cols, row_stride < 0 ? cols : row_stride),
          "lwSetTensor2dDescriptor");
  }
  lwTensorDescriptor_t get() const noexcept { return d_.get(); }
  operator lwTensorDescriptor_t() const noexcept { return get(); }

 private:
  detail::Owner<lwTensorDescriptor_t, lwDestroyTensorDescriptor> d_;
};

class Optimizer {
 public:
  // An optimizer with torch.optim's defaults for mode (change them with set()).
  explicit Optimizer(lwOptimizerMode_t mode = LW_OPTIMIZER_SGD) {
    lwOptimizerDescriptor_t o = nullptr;
    check(lwCreateOptimizerDescriptor(&o), "lwCreateOptimizerDescriptor");
    o_ = detail::Owner<lwOptimizerDescriptor_t, lwDestroyOptimizerDescriptor>(o);
    lwOptimizerParams_t p;
    check(lwOptimizerParamsDefault(mode, &p), "lwOptimizerParamsDefault");
    set(mode, p);
  }
  Optimizer(lwOptimizerMode_t mode, const lwOptimizerParams_t &params) : Optimizer(mode) { set(mode, params); }
  static lwOptimizerParams_t defaults(lwOptimizerMode_t mode) {
    lwOptimizerParams_t p;
    check(lwOptimizerParamsDefault(mode, &p), "lwOptimizerParamsDefault");
    return p;
  }
  void set(lwOptimizerMode_t mode, const lwOptimizerParams_t &params) {
    check(lwSetOptimizerDescriptor(get(), mode, &params), "lwSetOptimizerDescriptor");
  }
  lwOptimizerParams_t params() const {
    lwOptimizerParams_t p;
    check(lwGetOptimizerDescriptor(get(), nullptr, &p), "lwGetOptimizerDescriptor");
    return p;
  }
  int64_t step_count() const {
    int64_t t;
    check(lwGetOptimizerStepCount(get(), &t), "lwGetOptimizerStepCount");
    return t;
  }
  lwOptimizerDescriptor_t get() const noexcept { return o_.get(); }

 private:
  detail::Owner<lwOptimizerDescriptor_t, lwDestroyOptimizerDescriptor> o_;
};

// One layer's parameters: zero-copy pointers into the network's memory.
struct Layer {
  lwTensorDescriptor_t weight_desc;  // owned by the network
  void *weight;
  lwTensorDescriptor_t bias_desc;    // NULL when the layer has no bias
  void *bias;
};

class Network {
 public:
  Network(const Handle &handle, const std::vector<int64_t> &sizes, const std::vector<lwActivationMode_t> &activations,
          const std::vector<int> &has_bias = {}, lwDataType_t dtype = LW_FLOAT32) {
    if (sizes.size() != activations.size() + 1)
      throw std::invalid_argument("lw::Network: sizes must have one more entry than activations");
    if (!has_bias.empty() && has_bias.size() != activations.size())
      throw std::invalid_argument("lw::Network: has_bias must be empty or have one entry per layer");
    lwNetwork_t n = nullptr;
    check(lwNetworkCreate(handle.get(), static_cast<int>(activations.size()), sizes.data(), activations.data(),
                          has_bias.empty() ? nullptr : has_bias.data(), dtype, &n),
          "lwNetworkCreate");
    n_ = detail::Owner<lwNetwork_t, lwNetworkDestroy>(n);
  }
  static Network load(const Handle &handle, const std::string &path) {
    lwNetwork_t n = nullptr;
    check(lwNetworkLoad(handle.get(), path.c_str(), &n), "lwNetworkLoad");
    return Network(n);
  }
  void save(const std::string &path) const { check(lwNetworkSave(get(), path.c_str()), "lwNetworkSave"); }

  int layer_count() const {
    int L;
    check(lwNetworkGetLayerCount(get(), &L), "lwNetworkGetLayerCount");
    return L;
  }
  std::vector<int64_t> sizes() const {
    std::vector<int64_t> s(static_cast<size_t>(layer_count()) + 1);
    check(lwNetworkGetSizes(get(), s.data()), "lwNetworkGetSizes");
    return s;
  }
  lwDataType_t dtype() const {
    lwDataType_t t;
    check(lwNetworkGetDataType(get(), &t), "lwNetworkGetDataType");
    return t;
  }
  lwActivationMode_t activation(int layer) const {
    lwActivationMode_t a;
    check(lwNetworkGetActivation(get(), layer, &a), "lwNetworkGetActivation");
    return a;
  }
  Layer layer(int i) const {
    Layer l{};
    check(lwNetworkGetLayer(get(), i, &l.weight_desc, &l.weight, &l.bias_desc, &l.bias), "lwNetworkGetLayer");
    return l;
  }
  void init_uniform(uint64_t seed) { check(lwNetworkInitUniform(get(), seed), "lwNetworkInitUniform"); }
  void forward(int64_t n, const void *x, void *y) { check(lwNetworkForward(get(), n, x, y), "lwNetworkForward"); }
  double train_step(int64_t n, const void *x, const void *target, lwLossMode_t loss, const Optimizer &opt) {
    double l = 0;
    check(lwNetworkTrainStep(get(), n, x, target, loss, opt.get(), &l), "lwNetworkTrainStep");
    return l;
  }
  // The step in three parts (data parallelism): compute_gradients, then change gradients()
  // in place (e.g. an MPI allreduce of gradients().data over gradients().count elements),
  // then apply_gradients.
  double compute_gradients(int64_t n, const void *x, const void *target, lwLossMode_t loss) {
    double l = 0;
    check(lwNetworkComputeGradients(get(), n, x, target, loss, &l), "lwNetworkComputeGradients");
    return l;
  }
  struct FlatGradients {
    void *data;     // the network's flat buffer (W0, b0, W1, b1, ...), in the handle's memory
    int64_t count;  // elements, in the network dtype
  };
  FlatGradients gradients() const {
    FlatGradients g{nullptr, 0};
    check(lwNetworkGetGradients(get(), nullptr, &g.data, &g.count), "lwNetworkGetGradients");
    return g;
  }
  void apply_gradients(const Optimizer &opt) {
    check(lwNetworkApplyGradients(get(), opt.get()), "lwNetworkApplyGradients");
  }
  // The last layer's output of the last step (before its update), in network memory.
  const void *output() const {
    const void *y = nullptr;
    check(lwNetworkGetOutput(get(), nullptr, &y), "lwNetworkGetOutput");
    return y;
  }
  void set_option(lwNetworkOption_t option, bool on) {
    check(lwNetworkSetOption(get(), option, on ? 1 : 0), "lwNetworkSetOption");
  }
  std::vector<double> gradient_norms() const {
    std::vector<double> v(static_cast<size_t>(layer_count()));
    check(lwNetworkGetGradientNorms(get(), v.data()), "lwNetworkGetGradientNorms");
    return v;
  }
  lwNetwork_t get() const noexcept { return n_.get(); }

 private:
  explicit Network(lwNetwork_t n) : n_(n) {}
  detail::Owner<lwNetwork_t, lwNetworkDestroy> n_;
};

}  // namespace lw

#endif /* LAYERWISE_LAYERWISE_HPP_ */
