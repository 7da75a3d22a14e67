// bindings.cpp -- the private extension module layerwise._core.
//
// A narrow layer over the public C API (tiny-cuda-nn style): every function
// takes a Handle and raw data pointers with their shapes, so NumPy (host) and
// CuPy (device) arrays go through the same calls; layerwise.ops extracts the
// pointers and checks Python-level types. Each tensor travels as four integers
//   ptr, rows, cols, row_stride        (ptr == 0: absent optional tensor)
// The C API validates shapes and dtypes; BAD_PARAM becomes ValueError with its
// message. The GIL is released while kernels run.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <map>
#include <memory>
#include <utility>
#include <string>
#include <vector>

#include "layerwise/layerwise.h"

namespace py = pybind11;

// A data pointer argument: a NumPy array (its data pointer is read while the
// argument is converted, i.e. with the GIL held — much cheaper than
// ndarray.ctypes.data) or an integer address (CuPy's a.data.ptr; 0 = absent).
struct DataPtr {
  uintptr_t p = 0;
  operator uintptr_t() const { return p; }
};

namespace pybind11::detail {
template <>
struct type_caster<DataPtr> {
  PYBIND11_TYPE_CASTER(DataPtr, const_name("ndarray | int"));
  bool load(handle src, bool) {
    if (!src) return false;
    if (PyLong_Check(src.ptr())) {
      value.p = reinterpret_cast<uintptr_t>(PyLong_AsVoidPtr(src.ptr()));
      if (PyErr_Occurred()) {
        PyErr_Clear();
        return false;
      }
      return true;
    }
    if (array::check_(src)) {
      value.p = reinterpret_cast<uintptr_t>(array_proxy(src.ptr())->data);
      return true;
    }
    return false;
  }
};
}  // namespace pybind11::detail

namespace {

// Raised for failures other than bad arguments (NOT_SUPPORTED, EXECUTION_FAILED, ...).
struct LayerwiseError : std::runtime_error {
  lwStatus_t status;
  LayerwiseError(lwStatus_t s, const std::string &m) : std::runtime_error(m), status(s) {}
};

void check(lwStatus_t s) {
  if (s == LW_STATUS_SUCCESS) return;
  std::string msg = lwGetLastErrorMessage();
  if (s == LW_STATUS_BAD_PARAM) throw py::value_error(msg);
  throw LayerwiseError(s, std::string(lwGetErrorString(s)) + ": " + msg);
}

// An owned tensor descriptor (created per call: a small heap allocation).
class Desc {
 public:
  Desc() { check(lwCreateTensorDescriptor(&d_)); }
  Desc(int dtype, int64_t rows, int64_t cols, int64_t ld) : Desc() {
    check(lwSetTensor2dDescriptor(d_, (lwDataType_t)dtype, rows, cols, ld));
  }
  ~Desc() { lwDestroyTensorDescriptor(d_); }
  Desc(const Desc &) = delete;
  Desc &operator=(const Desc &) = delete;
  lwTensorDescriptor_t get() const { return d_; }

 private:
  lwTensorDescriptor_t d_ = nullptr;
};

inline void *P(uintptr_t p) { return reinterpret_cast<void *>(p); }

class Handle {
 public:
  explicit Handle(const std::string &device) {
    lwDevice_t dev;
    if (device == "cpu") dev = LW_DEVICE_CPU;
    else if (device == "cuda") dev = LW_DEVICE_CUDA;
    else throw py::value_error("device: expected 'cpu' or 'cuda', got '" + device + "'");
    check(lwCreate(&h_, dev));
    device_ = device;
  }
  ~Handle() {
    if (h_) lwDestroy(h_);
  }
  Handle(const Handle &) = delete;
  Handle &operator=(const Handle &) = delete;
  lwHandle_t get() const { return h_; }
  const std::string &device() const { return device_; }
  int num_threads() const {
    int n = 0;
    check(lwGetNumThreads(h_, &n));
    return n;
  }
  void set_num_threads(int n) { check(lwSetNumThreads(h_, n)); }
  void set_stream(uintptr_t s) { check(lwSetStream(h_, P(s))); }
  uintptr_t stream() const {
    void *s = nullptr;
    check(lwGetStream(h_, &s));
    return reinterpret_cast<uintptr_t>(s);
  }

 private:
  lwHandle_t h_ = nullptr;
  std::string device_;
};

using GIL = py::call_guard<py::gil_scoped_release>;

}  // namespace

// ---- optimizers: an owned optimizer descriptor built from Python values ----
namespace {

class OptDesc {
 public:
  // hyper: torch.optim names -> values, over lwOptimizerParamsDefault(mode); t: completed steps.
  OptDesc(int mode, const std::map<std::string, double> &hyper, int64_t t) {
    lwOptimizerParams_t p{};
    check(lwOptimizerParamsDefault((lwOptimizerMode_t)mode, &p));
    for (const auto &kv : hyper) {
      const std::string &k = kv.first;
      const double v = kv.second;
      if (k == "lr") p.lr = v;
      else if (k == "momentum") p.momentum = v;
      else if (k == "weight_decay") p.weight_decay = v;
      else if (k == "nesterov") p.nesterov = flag(k, v);
      else if (k == "beta1") p.beta1 = v;
      else if (k == "beta2") p.beta2 = v;
      else if (k == "alpha") p.alpha = v;
      else if (k == "eps") p.eps = v;
      else if (k == "centered") p.centered = flag(k, v);
      else if (k == "lr_decay") p.lr_decay = v;
      else if (k == "initial_accumulator_value") p.initial_accumulator_value = v;
      else throw py::value_error(k + ": not an optimizer hyperparameter");
    }
    check(lwCreateOptimizerDescriptor(&d_));
    try {
      check(lwSetOptimizerDescriptor(d_, (lwOptimizerMode_t)mode, &p));
      check(lwSetOptimizerStepCount(d_, t));
    } catch (...) {
      lwDestroyOptimizerDescriptor(d_);
      throw;
    }
  }
  ~OptDesc() { lwDestroyOptimizerDescriptor(d_); }
  OptDesc(const OptDesc &) = delete;
  OptDesc &operator=(const OptDesc &) = delete;
  lwOptimizerDescriptor_t get() const { return d_; }
  int state_count() const {
    int n = 0;
    check(lwGetOptimizerStateCount(d_, &n));
    return n;
  }

 private:
  static int flag(const std::string &k, double v) {
    if (v != 0.0 && v != 1.0) throw py::value_error(k + ": must be 0/1 (False/True)");
    return (int)v;
  }
  lwOptimizerDescriptor_t d_ = nullptr;
};

// The state pointers of one tensor, checked against the descriptor's count.
std::vector<void *> state_pointers(const OptDesc &o, const std::vector<DataPtr> &state, const char *name) {
  const int n = o.state_count();
  if ((int)state.size() != n)
    throw py::value_error(std::string(name) + ": this optimizer needs " + std::to_string(n) +
                          " state buffers, got " + std::to_string(state.size()));
  std::vector<void *> v;
  for (const DataPtr &d : state) v.push_back(P(d));
  return v;
}

}  // namespace

// ---- networks: lwNetwork_t with zero-copy parameter views ----
namespace {

class Network {
 public:
  Network(py::object handle, lwNetwork_t net) : handle_(std::move(handle)), net_(net) {}
  static std::unique_ptr<Network> create(py::object handle, const std::vector<int64_t> &sizes,
                                         const std::vector<int> &activations, const std::vector<int> &has_bias,
                                         int dtype) {
    Handle &h = handle.cast<Handle &>();
    if (sizes.size() != activations.size() + 1)
      throw py::value_error("sizes: needs one more entry than activations (" + std::to_string(activations.size()) +
                            " layers), got " + std::to_string(sizes.size()));
    if (has_bias.size() != activations.size())
      throw py::value_error("has_bias: needs one entry per layer, got " + std::to_string(has_bias.size()));
    std::vector<lwActivationMode_t> acts;
    for (int a : activations) acts.push_back((lwActivationMode_t)a);
    lwNetwork_t n = nullptr;
    check(lwNetworkCreate(h.get(), (int)acts.size(), sizes.data(), acts.data(), has_bias.data(),
                          (lwDataType_t)dtype, &n));
    return std::make_unique<Network>(std::move(handle), n);
  }
  static std::unique_ptr<Network> load(py::object handle, const std::string &path) {
    Handle &h = handle.cast<Handle &>();
    lwNetwork_t n = nullptr;
    lwStatus_t st;
    {
      py::gil_scoped_release release;
      st = lwNetworkLoad(h.get(), path.c_str(), &n);
    }
    if (st == LW_STATUS_EXECUTION_FAILED) {  // I/O: the caller's OSError
      PyErr_SetString(PyExc_OSError, lwGetLastErrorMessage());
      throw py::error_already_set();
    }
    check(st);
    return std::make_unique<Network>(std::move(handle), n);
  }
  ~Network() {
    if (net_) lwNetworkDestroy(net_);
  }
  Network(const Network &) = delete;
  Network &operator=(const Network &) = delete;

  lwNetwork_t get() const { return net_; }
  py::object handle() const { return handle_; }
  int num_layers() const {
    int L;
    check(lwNetworkGetLayerCount(net_, &L));
    return L;
  }
  std::vector<int64_t> sizes() const {
    std::vector<int64_t> s(num_layers() + 1);
    check(lwNetworkGetSizes(net_, s.data()));
    return s;
  }
  std::vector<int> activations() const {
    std::vector<int> v;
    for (int i = 0; i < num_layers(); ++i) {
      lwActivationMode_t a;
      check(lwNetworkGetActivation(net_, i, &a));
      v.push_back((int)a);
    }
    return v;
  }
  int dtype() const {
    lwDataType_t t;
    check(lwNetworkGetDataType(net_, &t));
    return (int)t;
  }
  // (weight address, bias address or 0) of layer i.
  std::pair<uintptr_t, uintptr_t> pointers(int i) const {
    void *w = nullptr, *b = nullptr;
    check(lwNetworkGetLayer(net_, i, nullptr, &w, nullptr, &b));
    return {reinterpret_cast<uintptr_t>(w), reinterpret_cast<uintptr_t>(b)};
  }
  void save(const std::string &path) {
    lwStatus_t st;
    {
      py::gil_scoped_release release;
      st = lwNetworkSave(net_, path.c_str());
    }
    if (st == LW_STATUS_EXECUTION_FAILED) {
      PyErr_SetString(PyExc_OSError, lwGetLastErrorMessage());
      throw py::error_already_set();
    }
    check(st);
  }

 private:
  py::object handle_;  // keeps the Handle alive as long as the network
  lwNetwork_t net_ = nullptr;
};

// A NumPy view of `count` elements at ptr, shaped `shape`, whose base keeps `owner` alive.
py::array view(py::object owner, int dtype, std::vector<py::ssize_t> shape, uintptr_t ptr) {
  const py::dtype dt = dtype == LW_FLOAT32 ? py::dtype::of<float>() : py::dtype::of<double>();
  return py::array(dt, shape, {}, P(ptr), owner);
}

void register_network(py::module_ &m) {
  py::class_<Network>(m, "Network")
      .def(py::init(&Network::create), py::arg("handle"), py::arg("sizes"), py::arg("activations"),
           py::arg("has_bias"), py::arg("dtype"))
      .def_static("load", &Network::load, py::arg("handle"), py::arg("path"))
      .def("save", &Network::save, py::arg("path"))
      .def_property_readonly("handle", &Network::handle)
      .def_property_readonly("num_layers", &Network::num_layers)
      .def_property_readonly("sizes", &Network::sizes)
      .def_property_readonly("activations", &Network::activations)
      .def_property_readonly("dtype", &Network::dtype)
      .def("pointers", &Network::pointers, py::arg("layer"))
      // CPU networks: NumPy views that share the network's memory (the array keeps it alive).
      .def("weight", [](py::object self, int i) {
             Network &n = self.cast<Network &>();
             const auto s = n.sizes();
             const auto p = n.pointers(i);
             return view(self, n.dtype(), {(py::ssize_t)s[i + 1], (py::ssize_t)s[i]}, p.first);
           }, py::arg("layer"))
      .def("bias", [](py::object self, int i) -> py::object {
             Network &n = self.cast<Network &>();
             const auto s = n.sizes();
             const auto p = n.pointers(i);
             if (!p.second) return py::none();
             return view(self, n.dtype(), {(py::ssize_t)s[i + 1]}, p.second);
           }, py::arg("layer"))
      .def("init_uniform", [](Network &n, uint64_t seed) { check(lwNetworkInitUniform(n.get(), seed)); },
           py::arg("seed"))
      .def("forward", [](Network &n, int64_t rows, DataPtr x, DataPtr y) {
             check(lwNetworkForward(n.get(), rows, P(x), P(y)));
           }, py::arg("n"), py::arg("x"), py::arg("y"), GIL())
      .def("train_step",
           [](Network &n, int64_t rows, DataPtr x, DataPtr target, int loss, int mode,
              const std::map<std::string, double> &hyper, int64_t t) {
             double value = 0;
             OptDesc o(mode, hyper, t);
             lwStatus_t st;
             {
               py::gil_scoped_release release;
               st = lwNetworkTrainStep(n.get(), rows, P(x), P(target), (lwLossMode_t)loss, o.get(), &value);
             }
             check(st);
             return value;
           },
           py::arg("n"), py::arg("x"), py::arg("target"), py::arg("loss"), py::arg("mode"), py::arg("hyper"),
           py::arg("completed_steps"))
      // The step in three parts: compute_gradients -> (allreduce gradients() in place) -> apply_gradients.
      .def("compute_gradients",
           [](Network &n, int64_t rows, DataPtr x, DataPtr target, int loss) {
             double value = 0;
             lwStatus_t st;
             {
               py::gil_scoped_release release;
               st = lwNetworkComputeGradients(n.get(), rows, P(x), P(target), (lwLossMode_t)loss, &value);
             }
             check(st);
             return value;
           },
           py::arg("n"), py::arg("x"), py::arg("target"), py::arg("loss"))
      .def("gradients", [](py::object self) {
             Network &n = self.cast<Network &>();
             void *flat = nullptr;
             int64_t count = 0;
             check(lwNetworkGetGradients(n.get(), nullptr, &flat, &count));
             return view(self, n.dtype(), {(py::ssize_t)count}, reinterpret_cast<uintptr_t>(flat));
           })
      .def("apply_gradients",
           [](Network &n, int mode, const std::map<std::string, double> &hyper, int64_t t) {
             OptDesc o(mode, hyper, t);
             lwStatus_t st;
             {
               py::gil_scoped_release release;
               st = lwNetworkApplyGradients(n.get(), o.get());
             }
             check(st);
           },
           py::arg("mode"), py::arg("hyper"), py::arg("completed_steps"))
      .def("output", [](py::object self) {
             Network &n = self.cast<Network &>();
             lwTensorDescriptor_t d;
             const void *y;
             check(lwNetworkGetOutput(n.get(), &d, &y));
             int64_t r, c;
             check(lwGetTensor2dDescriptor(d, nullptr, &r, &c, nullptr));
             return view(self, n.dtype(), {(py::ssize_t)r, (py::ssize_t)c}, reinterpret_cast<uintptr_t>(y));
           })
      .def("prepare_optimizer_state",
           [](Network &n, int mode, const std::map<std::string, double> &hyper) {
             OptDesc o(mode, hyper, 0);
             check(lwNetworkPrepareOptimizerState(n.get(), o.get()));
             return o.state_count();
           },
           py::arg("mode"), py::arg("hyper"))
      .def("optimizer_state", [](py::object self, int layer, int tensor, int slot) {
             Network &n = self.cast<Network &>();
             lwTensorDescriptor_t d;
             void *p;
             check(lwNetworkGetOptimizerState(n.get(), layer, tensor, slot, &d, &p));
             int64_t r, c;
             check(lwGetTensor2dDescriptor(d, nullptr, &r, &c, nullptr));
             std::vector<py::ssize_t> shape{(py::ssize_t)r, (py::ssize_t)c};
             if (tensor == 1) shape = {(py::ssize_t)c};  // a bias is 1-D, like nn's
             return view(self, n.dtype(), shape, reinterpret_cast<uintptr_t>(p));
           }, py::arg("layer"), py::arg("tensor"), py::arg("slot"))
      .def("reset_optimizer_state", [](Network &n) { check(lwNetworkResetOptimizerState(n.get())); })
      .def("set_option", [](Network &n, int option, bool on) {
             check(lwNetworkSetOption(n.get(), (lwNetworkOption_t)option, on ? 1 : 0));
           }, py::arg("option"), py::arg("on"))
      .def("input_gradient", [](py::object self) {
             Network &n = self.cast<Network &>();
             lwTensorDescriptor_t d;
             const void *dx;
             check(lwNetworkGetInputGradient(n.get(), &d, &dx));
             int64_t r, c;
             check(lwGetTensor2dDescriptor(d, nullptr, &r, &c, nullptr));
             return view(self, n.dtype(), {(py::ssize_t)r, (py::ssize_t)c}, reinterpret_cast<uintptr_t>(dx));
           })
      .def("gradient_norms", [](Network &n) {
             std::vector<double> v(n.num_layers());
             check(lwNetworkGetGradientNorms(n.get(), v.data()));
             return v;
           });
  m.attr("NETWORK_INPUT_GRADIENT") = (int)LW_NETWORK_INPUT_GRADIENT;
  m.attr("NETWORK_GRADIENT_NORMS") = (int)LW_NETWORK_GRADIENT_NORMS;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "layerwise._core: pointer-level bindings of the layerwise C API (private; use layerwise.ops)";

  static py::exception<LayerwiseError> exc(m, "LayerwiseError", PyExc_RuntimeError);
  (void)exc;

  m.attr("FLOAT32") = (int)LW_FLOAT32;
  m.attr("FLOAT64") = (int)LW_FLOAT64;
  m.attr("INT32") = (int)LW_INT32;
  m.attr("ACTIVATIONS") = py::dict(
      py::arg("identity") = (int)LW_ACTIVATION_IDENTITY, py::arg("sigmoid") = (int)LW_ACTIVATION_SIGMOID,
      py::arg("tanh") = (int)LW_ACTIVATION_TANH, py::arg("relu") = (int)LW_ACTIVATION_RELU,
      py::arg("threshold") = (int)LW_ACTIVATION_THRESHOLD);
  m.attr("LOSSES") = py::dict(py::arg("quadratic") = (int)LW_LOSS_QUADRATIC,
                              py::arg("binary_cross_entropy") = (int)LW_LOSS_BINARY_CROSS_ENTROPY,
                              py::arg("softmax_cross_entropy") = (int)LW_LOSS_SOFTMAX_CROSS_ENTROPY);
  m.attr("BCE_EPS_FLOAT32") = LW_BCE_EPS_FLOAT32;
  m.attr("BCE_EPS_FLOAT64") = LW_BCE_EPS_FLOAT64;

  m.def("version", [] {
    size_t v = lwGetVersion();
    return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
  });
  m.def("compiled_isas", [] { return std::string(lwGetCompiledIsas()); });
  m.def("active_isa", [] { return std::string(lwGetActiveIsa()); });
  m.def("cuda_compiled", [] { return lwCudaCompiled() != 0; });
  m.def("cuda_device_count", [] { return lwCudaDeviceCount(); }, GIL());
  m.def("cpu_info", [] {
    lwCpuInfo_t c;
    check(lwGetCpuInfo(&c));
    auto blocking = [](const lwGemmBlocking_t &b) {
      return py::dict(py::arg("mc") = b.mc, py::arg("kc") = b.kc, py::arg("nc") = b.nc,
                      py::arg("mr") = b.mr, py::arg("nr") = b.nr);
    };
    return py::dict(py::arg("model") = std::string(c.model), py::arg("isa") = std::string(c.isa),
                    py::arg("cache_source") = std::string(c.cache_source),
                    py::arg("l1d_bytes") = c.caches.l1d_bytes, py::arg("l1d_ways") = c.caches.l1d_ways,
                    py::arg("l2_bytes") = c.caches.l2_bytes, py::arg("l2_ways") = c.caches.l2_ways,
                    py::arg("l3_bytes") = c.caches.l3_bytes,
                    py::arg("l3_bytes_per_core") = c.caches.l3_bytes_per_core,
                    py::arg("logical_cpus") = c.logical_cpus, py::arg("gemm_float32") = blocking(c.gemm_f32),
                    py::arg("gemm_float64") = blocking(c.gemm_f64),
                    py::arg("gemm_source") = std::string(c.gemm_source));
  });
  m.def(
      "set_gemm_blocking",
      [](int dtype, int shape, py::object blocks) {
        if (blocks.is_none()) {
          check(lwSetGemmBlocking(static_cast<lwDataType_t>(dtype), static_cast<lwGemmShapeClass_t>(shape), nullptr));
          return;
        }
        auto t = blocks.cast<std::tuple<int64_t, int64_t, int64_t>>();
        lwGemmBlocking_t b{std::get<0>(t), std::get<1>(t), std::get<2>(t), 0, 0};
        check(lwSetGemmBlocking(static_cast<lwDataType_t>(dtype), static_cast<lwGemmShapeClass_t>(shape), &b));
      },
      py::arg("dtype"), py::arg("shape"), py::arg("blocks"),
      "Sets (mc, kc, nc) for one dtype and shape class (0 batch, 1 square); None resets.");
  m.attr("GEMM_SHAPES") = py::dict(py::arg("batch") = (int)LW_GEMM_SHAPE_BATCH,
                                   py::arg("square") = (int)LW_GEMM_SHAPE_SQUARE);
  m.def(
      "derive_gemm_blocking",
      [](int64_t l1d_bytes, int l1d_ways, int64_t l2_bytes, int l2_ways, int64_t l3_bytes,
         int64_t l3_bytes_per_core, const std::string &isa, int dtype) {
        lwCacheSizes_t c{l1d_bytes, l1d_ways, l2_bytes, l2_ways, l3_bytes, l3_bytes_per_core};
        lwGemmBlocking_t b;
        check(lwDeriveGemmBlocking(&c, isa.c_str(), static_cast<lwDataType_t>(dtype), &b));
        return py::dict(py::arg("mc") = b.mc, py::arg("kc") = b.kc, py::arg("nc") = b.nc,
                        py::arg("mr") = b.mr, py::arg("nr") = b.nr);
      },
      py::arg("l1d_bytes"), py::arg("l1d_ways"), py::arg("l2_bytes"), py::arg("l2_ways"),
      py::arg("l3_bytes"), py::arg("l3_bytes_per_core"), py::arg("isa"), py::arg("dtype"));

  py::class_<Handle>(m, "Handle")
      .def(py::init<const std::string &>(), py::arg("device") = "cpu")
      .def_property_readonly("device", &Handle::device)
      .def_property("num_threads", &Handle::num_threads, &Handle::set_num_threads)
      .def("set_stream", &Handle::set_stream)
      .def("stream", &Handle::stream);

  // ---- machine probes (for the benchmarks' fractions of peak) ---------------
  m.def(
      "measure_fma_peak",
      [](int nthreads, double min_seconds, int repeats) {
        double g = 0;
        check(lwMeasureFmaPeak(nthreads, min_seconds, repeats, &g));
        return g;
      },
      py::arg("nthreads"), py::arg("min_seconds") = 0.1, py::arg("repeats") = 3, GIL(),
      "float32 FMA GFLOP/s of register-only chains on nthreads pool threads (best of repeats)");
  m.def(
      "measure_copy_bandwidth",
      [](int nthreads, size_t bytes, int repeats) {
        double g = 0;
        check(lwMeasureCopyBandwidth(nthreads, bytes, repeats, &g));
        return g;
      },
      py::arg("nthreads"), py::arg("bytes") = size_t(64) << 20, py::arg("repeats") = 5, GIL(),
      "copy bandwidth in GB/s (read + written) of a bytes-sized memcpy on nthreads pool threads");

  // ---- dense layers --------------------------------------------------------
  m.def("linear_forward",
        [](Handle &h, int dt, double alpha, DataPtr x, int64_t xr, int64_t xc, int64_t xl,
           DataPtr w, int64_t wr, int64_t wc, int64_t wl, DataPtr b, int64_t bc, int act,
           double beta, DataPtr y, int64_t yr, int64_t yc, int64_t yl) {
          Desc xd(dt, xr, xc, xl), wd(dt, wr, wc, wl), yd(dt, yr, yc, yl);
          if (b) {
            Desc bd(dt, 1, bc, bc);
            check(lwLinearForward(h.get(), alpha, xd.get(), P(x), wd.get(), P(w), bd.get(), P(b),
                                  (lwActivationMode_t)act, beta, yd.get(), P(y)));
          } else {
            check(lwLinearForward(h.get(), alpha, xd.get(), P(x), wd.get(), P(w), nullptr, nullptr,
                                  (lwActivationMode_t)act, beta, yd.get(), P(y)));
          }
        },
        GIL());

  m.def("linear_backward_data",
        [](Handle &h, int dt, double alpha, DataPtr dy, int64_t r, int64_t c, int64_t l,
           DataPtr w, int64_t wr, int64_t wc, int64_t wl, double beta, DataPtr dx, int64_t xr,
           int64_t xc, int64_t xl) {
          Desc dyd(dt, r, c, l), wd(dt, wr, wc, wl), dxd(dt, xr, xc, xl);
          check(lwLinearBackwardData(h.get(), alpha, dyd.get(), P(dy), wd.get(), P(w), beta,
                                     dxd.get(), P(dx)));
        },
        GIL());

  m.def("linear_backward_weights",
        [](Handle &h, int dt, double alpha, DataPtr dy, int64_t r, int64_t c, int64_t l,
           DataPtr x, int64_t xr, int64_t xc, int64_t xl, double beta, DataPtr dw,
           int64_t wr, int64_t wc, int64_t wl, DataPtr db, int64_t bc) {
          Desc dyd(dt, r, c, l), xd(dt, xr, xc, xl), dwd(dt, wr, wc, wl);
          if (db) {
            Desc bd(dt, 1, bc, bc);
            check(lwLinearBackwardWeights(h.get(), alpha, dyd.get(), P(dy), xd.get(), P(x), beta,
                                          dwd.get(), P(dw), bd.get(), P(db)));
          } else {
            check(lwLinearBackwardWeights(h.get(), alpha, dyd.get(), P(dy), xd.get(), P(x), beta,
                                          dwd.get(), P(dw), nullptr, nullptr));
          }
        },
        GIL());

  // ---- activations ---------------------------------------------------------
  m.def("activation_forward",
        [](Handle &h, int dt, int mode, double alpha, DataPtr x, int64_t r, int64_t c,
           int64_t xl, double beta, DataPtr y, int64_t yl) {
          Desc xd(dt, r, c, xl), yd(dt, r, c, yl);
          check(lwActivationForward(h.get(), (lwActivationMode_t)mode, alpha, xd.get(), P(x), beta,
                                    yd.get(), P(y)));
        },
        GIL());

  m.def("activation_backward",
        [](Handle &h, int dt, int mode, double alpha, DataPtr y, int64_t r, int64_t c,
           int64_t yl, DataPtr dy, int64_t dyl, DataPtr x, int64_t xl, double beta,
           DataPtr dx, int64_t dxl) {
          Desc yd(dt, r, c, yl), dyd(dt, r, c, dyl), dxd(dt, r, c, dxl);
          if (x) {
            Desc xd(dt, r, c, xl);
            check(lwActivationBackward(h.get(), (lwActivationMode_t)mode, alpha, yd.get(), P(y),
                                       dyd.get(), P(dy), xd.get(), P(x), beta, dxd.get(), P(dx)));
          } else {
            check(lwActivationBackward(h.get(), (lwActivationMode_t)mode, alpha, yd.get(), P(y),
                                       dyd.get(), P(dy), nullptr, nullptr, beta, dxd.get(), P(dx)));
          }
        },
        GIL());

  m.def("softmax_forward",
        [](Handle &h, int dt, double alpha, DataPtr x, int64_t r, int64_t c, int64_t xl,
           double beta, DataPtr y, int64_t yl) {
          Desc xd(dt, r, c, xl), yd(dt, r, c, yl);
          check(lwSoftmaxForward(h.get(), alpha, xd.get(), P(x), beta, yd.get(), P(y)));
        },
        GIL());

  // ---- losses: returns the loss value; grad (ptr 0 = none) is overwritten --
  m.def("loss_forward_backward",
        [](Handle &h, int loss, int dt, DataPtr pred, int64_t r, int64_t c, int64_t pl,
           int tdt, DataPtr target, int64_t tc, int64_t tl, DataPtr grad, int64_t gl) {
          Desc pd(dt, r, c, pl), td(tdt, r, tc, tl);
          double value = 0.0;
          if (grad) {
            Desc gd(dt, r, c, gl);
            check(lwLossForwardBackward(h.get(), (lwLossMode_t)loss, pd.get(), P(pred), td.get(),
                                        P(target), &value, gd.get(), P(grad)));
          } else {
            check(lwLossForwardBackward(h.get(), (lwLossMode_t)loss, pd.get(), P(pred), td.get(),
                                        P(target), &value, nullptr, nullptr));
          }
          return value;
        },
        GIL());

  // ---- optimizer and sampling ----------------------------------------------
  m.def("sgd_update",
        [](Handle &h, int dt, double lr, double momentum, double weight_decay, bool nesterov,
           DataPtr param, int64_t r, int64_t c, int64_t l, DataPtr grad, DataPtr velocity) {
          Desc pd(dt, r, c, l);
          check(lwSgdUpdate(h.get(), lr, momentum, weight_decay, nesterov ? 1 : 0, pd.get(),
                            P(param), P(grad), P(velocity)));
        },
        GIL());

  m.def("linear_backward_sgd",
        [](Handle &h, int dt, DataPtr dy, int64_t r, int64_t c, int64_t l, DataPtr x, int64_t xr,
           int64_t xc, int64_t xl, double lr, double momentum, double weight_decay, bool nesterov,
           DataPtr w, int64_t wr, int64_t wc, int64_t wl, DataPtr wv, DataPtr b, int64_t bc,
           DataPtr bv, DataPtr dx, int64_t dxl) {
          Desc dyd(dt, r, c, l), xd(dt, xr, xc, xl), wd(dt, wr, wc, wl);
          Desc bd, dxd;
          if (b) check(lwSetTensor2dDescriptor(bd.get(), (lwDataType_t)dt, 1, bc, bc));
          if (dx) check(lwSetTensor2dDescriptor(dxd.get(), (lwDataType_t)dt, xr, xc, dxl));
          check(lwLinearBackwardSgdUpdate(h.get(), dyd.get(), P(dy), xd.get(), P(x), lr, momentum,
                                          weight_decay, nesterov ? 1 : 0, wd.get(), P(w), P(wv),
                                          b ? bd.get() : nullptr, P(b), P(bv),
                                          dx ? dxd.get() : nullptr, P(dx)));
        },
        GIL());

  m.def("bernoulli_sample",
        [](Handle &h, int dt, uint64_t seed, uint64_t offset, DataPtr p, int64_t pl,
           double p_scalar, DataPtr y, int64_t r, int64_t c, int64_t yl) {
          Desc yd(dt, r, c, yl);
          if (p) {
            Desc pd(dt, r, c, pl);
            check(lwBernoulliSample(h.get(), seed, offset, pd.get(), P(p), p_scalar, yd.get(), P(y)));
          } else {
            check(lwBernoulliSample(h.get(), seed, offset, nullptr, nullptr, p_scalar, yd.get(), P(y)));
          }
        },
        GIL());

  // ---- RBF units -------------------------------------------------------------
  m.def("rbf_forward",
        [](Handle &h, int dt, double alpha, DataPtr x, int64_t xr, int64_t xc, int64_t xl,
           DataPtr c, int64_t cr, int64_t cc, int64_t cl, DataPtr gamma, double beta, DataPtr y,
           int64_t yr, int64_t yc, int64_t yl) {
          Desc xd(dt, xr, xc, xl), cd(dt, cr, cc, cl), gd(dt, 1, cr, cr), yd(dt, yr, yc, yl);
          check(lwRbfForward(h.get(), alpha, xd.get(), P(x), cd.get(), P(c), gd.get(), P(gamma),
                             beta, yd.get(), P(y)));
        },
        GIL());

  m.def("rbf_backward",
        [](Handle &h, int dt, double alpha, DataPtr x, int64_t xr, int64_t xc, int64_t xl,
           DataPtr c, int64_t cr, int64_t cc, int64_t cl, DataPtr gamma, DataPtr y, int64_t yl,
           DataPtr dy, int64_t dyl, double beta, DataPtr dx, int64_t dxl, DataPtr dc, int64_t dcl,
           DataPtr dgamma) {
          Desc xd(dt, xr, xc, xl), cd(dt, cr, cc, cl), gd(dt, 1, cr, cr), yd(dt, xr, cr, yl),
              dyd(dt, xr, cr, dyl);
          Desc dxd, dcd, dgd;
          if (dx) check(lwSetTensor2dDescriptor(dxd.get(), (lwDataType_t)dt, xr, xc, dxl));
          if (dc) check(lwSetTensor2dDescriptor(dcd.get(), (lwDataType_t)dt, cr, cc, dcl));
          if (dgamma) check(lwSetTensor2dDescriptor(dgd.get(), (lwDataType_t)dt, 1, cr, cr));
          check(lwRbfBackward(h.get(), alpha, xd.get(), P(x), cd.get(), P(c), gd.get(), P(gamma),
                              yd.get(), P(y), dyd.get(), P(dy), beta, dx ? dxd.get() : nullptr,
                              P(dx), dc ? dcd.get() : nullptr, P(dc),
                              dgamma ? dgd.get() : nullptr, P(dgamma)));
        },
        GIL());

  // ---- optimizers (descriptor API) -------------------------------------------
  m.attr("OPTIMIZERS") = py::dict(py::arg("sgd") = (int)LW_OPTIMIZER_SGD, py::arg("adam") = (int)LW_OPTIMIZER_ADAM,
                                  py::arg("adamw") = (int)LW_OPTIMIZER_ADAMW,
                                  py::arg("rmsprop") = (int)LW_OPTIMIZER_RMSPROP,
                                  py::arg("adagrad") = (int)LW_OPTIMIZER_ADAGRAD);
  m.def("optimizer_params_default", [](int mode) {
    lwOptimizerParams_t p{};
    check(lwOptimizerParamsDefault((lwOptimizerMode_t)mode, &p));
    return std::map<std::string, double>{
        {"lr", p.lr}, {"momentum", p.momentum}, {"weight_decay", p.weight_decay},
        {"nesterov", (double)p.nesterov}, {"beta1", p.beta1}, {"beta2", p.beta2},
        {"alpha", p.alpha}, {"eps", p.eps}, {"centered", (double)p.centered},
        {"lr_decay", p.lr_decay}, {"initial_accumulator_value", p.initial_accumulator_value}};
  });

  m.def("optimizer_state_count",
        [](int mode, const std::map<std::string, double> &hyper) { return OptDesc(mode, hyper, 0).state_count(); });

  m.def("optimizer_step",
        [](Handle &h, int dt, int mode, const std::map<std::string, double> &hyper, int64_t step,
           DataPtr param, int64_t r, int64_t c, int64_t l, DataPtr grad, const std::vector<DataPtr> &state) {
          OptDesc o(mode, hyper, step);
          const std::vector<void *> st = state_pointers(o, state, "state");
          Desc pd(dt, r, c, l);
          check(lwOptimizerStep(h.get(), o.get(), pd.get(), P(param), P(grad), st.empty() ? nullptr : st.data()));
        },
        GIL());

  m.def("linear_backward_update",
        [](Handle &h, int dt, int mode, const std::map<std::string, double> &hyper, int64_t step,
           DataPtr dy, int64_t r, int64_t c, int64_t l, DataPtr x, int64_t xr, int64_t xc, int64_t xl,
           DataPtr w, int64_t wr, int64_t wc, int64_t wl, const std::vector<DataPtr> &w_state,
           DataPtr b, int64_t bc, const std::vector<DataPtr> &b_state, DataPtr dx, int64_t dxl) {
          OptDesc o(mode, hyper, step);
          const std::vector<void *> ws = state_pointers(o, w_state, "weight_state");
          const std::vector<void *> bs = b ? state_pointers(o, b_state, "bias_state") : std::vector<void *>{};
          Desc dyd(dt, r, c, l), xd(dt, xr, xc, xl), wd(dt, wr, wc, wl);
          Desc bd, dxd;
          if (b) check(lwSetTensor2dDescriptor(bd.get(), (lwDataType_t)dt, 1, bc, bc));
          if (dx) check(lwSetTensor2dDescriptor(dxd.get(), (lwDataType_t)dt, xr, xc, dxl));
          check(lwLinearBackwardUpdate(h.get(), o.get(), dyd.get(), P(dy), xd.get(), P(x), wd.get(), P(w),
                                       ws.empty() ? nullptr : ws.data(), b ? bd.get() : nullptr, P(b),
                                       bs.empty() ? nullptr : bs.data(), dx ? dxd.get() : nullptr, P(dx)));
        },
        GIL());

  register_network(m);
}
