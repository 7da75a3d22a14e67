// train_mnist.cpp -- training from C++ with one lwNetworkTrainStep per batch:
//   train_mnist MNIST_DIR [EPOCHS] [TRAIN_IMAGES] [MODEL_OUT]
// a 784-100-10 sigmoid MLP with softmax cross-entropy and SGD momentum 0.9,
// on the first TRAIN_IMAGES (default 60000) training images for EPOCHS
// (default 1) epochs of batch 32; prints the loss per epoch and the test
// error, and saves the net to MODEL_OUT when given.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <layerwise/layerwise.hpp>

#include "mnist_idx.h"

int main(int argc, char **argv) {
  if (argc < 2 || argc > 5) {
    std::fprintf(stderr, "usage: %s MNIST_DIR [EPOCHS] [TRAIN_IMAGES] [MODEL_OUT]\n", argv[0]);
    return 2;
  }
  try {
    const int epochs = argc > 2 ? std::atoi(argv[2]) : 1;
    const mnist::Set train = mnist::load(argv[1], "train"), test = mnist::load(argv[1], "t10k");
    const int64_t n_train = std::min<int64_t>(argc > 3 ? std::atoll(argv[3]) : train.count, train.count);
    if (epochs < 1 || n_train < 1) throw std::runtime_error("EPOCHS and TRAIN_IMAGES must be positive");

    lw::Handle handle(LW_DEVICE_CPU);
    lw::Network net(handle, {train.pixels, 100, 10}, {LW_ACTIVATION_SIGMOID, LW_ACTIVATION_IDENTITY}, {}, LW_FLOAT32);
    net.init_uniform(0);
    lwOptimizerParams_t p = lw::Optimizer::defaults(LW_OPTIMIZER_SGD);
    p.lr = 0.1;
    p.momentum = 0.9;
    lw::Optimizer sgd(LW_OPTIMIZER_SGD, p);

    const int64_t batch = 32;
    std::vector<int64_t> order(static_cast<size_t>(n_train));
    std::iota(order.begin(), order.end(), 0);
    std::mt19937_64 rng(1);
    std::vector<float> x(size_t(batch * train.pixels)), row;
    std::vector<int32_t> labels(batch);
    for (int e = 0; e < epochs; ++e) {
      std::shuffle(order.begin(), order.end(), rng);
      double total = 0;
      int64_t seen = 0;
      for (int64_t s = 0; s < n_train; s += batch) {
        const int64_t n = std::min(batch, n_train - s);
        for (int64_t r = 0; r < n; ++r) {
          mnist::pixels(train, order[size_t(s + r)], 1, row);
          std::copy(row.begin(), row.end(), x.begin() + r * train.pixels);
          labels[size_t(r)] = train.labels[size_t(order[size_t(s + r)])];
        }
        total += net.train_step(n, x.data(), labels.data(), LW_LOSS_SOFTMAX_CROSS_ENTROPY, sgd) * double(n);
        seen += n;
      }
      std::printf("epoch %d: mean training loss %.4f over %lld images\n", e + 1, total / double(seen),
                  (long long)seen);
    }
    std::vector<float> tx, ty(size_t(test.count * 10));
    mnist::pixels(test, 0, test.count, tx);
    net.forward(test.count, tx.data(), ty.data());
    int64_t errors = 0;
    for (int64_t r = 0; r < test.count; ++r) {
      const float *o = ty.data() + r * 10;
      errors += int64_t(std::max_element(o, o + 10) - o) != test.labels[size_t(r)];
    }
    if (argc > 4) net.save(argv[4]);
    std::printf("test error_rate: %.2f %%\n", 100.0 * double(errors) / double(test.count));
    return 0;
  } catch (const std::exception &e) {
    std::fprintf(stderr, "train_mnist: %s\n", e.what());
    return 1;
  }
}
