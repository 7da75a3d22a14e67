// classify_mnist.cpp -- C++ inference of a network trained in Python:
//   classify_mnist MODEL_FILE MNIST_DIR
// loads a model file written by layerwise.nn.save (safetensors), classifies
// the 10,000 MNIST test images (t10k-*-idx?-ubyte, gzip or raw) and prints
// `error_rate: X.XX %` as its last line, the way train.error_rate counts:
// argmax of the outputs (first maximum), or for one output unit output > 0.5
// (> 0 when the last layer is identity or tanh); batches of 1024 rows.
#include <algorithm>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include <layerwise/layerwise.hpp>

#include "mnist_idx.h"

template <typename T>
int64_t count_errors(lw::Network &net, const mnist::Set &test) {
  const auto sizes = net.sizes();
  const int64_t outputs = sizes.back(), batch = 1024;
  const lwActivationMode_t last = net.activation(net.layer_count() - 1);
  const double threshold = (last == LW_ACTIVATION_IDENTITY || last == LW_ACTIVATION_TANH) ? 0.0 : 0.5;
  std::vector<T> x, y;
  int64_t errors = 0;
  for (int64_t first = 0; first < test.count; first += batch) {
    const int64_t n = std::min(batch, test.count - first);
    mnist::pixels(test, first, n, x);
    y.resize(size_t(n * outputs));
    net.forward(n, x.data(), y.data());
    for (int64_t r = 0; r < n; ++r) {
      const T *row = y.data() + r * outputs;
      int64_t label = 0;
      if (outputs == 1) {
        label = row[0] > threshold;
      } else {
        for (int64_t c = 1; c < outputs; ++c)
          if (row[c] > row[label]) label = c;
      }
      errors += label != test.labels[size_t(first + r)];
    }
  }
  return errors;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s MODEL_FILE MNIST_DIR\n", argv[0]);
    return 2;
  }
  try {
    lw::Handle handle(LW_DEVICE_CPU);
    lw::Network net = lw::Network::load(handle, argv[1]);
    const mnist::Set test = mnist::load(argv[2], "t10k");
    if (net.sizes().front() != test.pixels) {
      std::fprintf(stderr, "%s: the network takes %lld inputs, MNIST images have %lld pixels\n", argv[1],
                   (long long)net.sizes().front(), (long long)test.pixels);
      return 1;
    }
    const int64_t errors =
        net.dtype() == LW_FLOAT32 ? count_errors<float>(net, test) : count_errors<double>(net, test);
    std::printf("model: %s (%d layers), %lld test images, %lld errors\n", argv[1], net.layer_count(),
                (long long)test.count, (long long)errors);
    std::printf("error_rate: %.2f %%\n", 100.0 * double(errors) / double(test.count));
    return 0;
  } catch (const std::exception &e) {
    std::fprintf(stderr, "classify_mnist: %s\n", e.what());
    return 1;
  }
}
