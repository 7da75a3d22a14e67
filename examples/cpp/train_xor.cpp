// train_xor.cpp -- embedding layerwise's C API in a C++ program: a 2-2-1
// sigmoid network (the lecture's smallest net that needs a hidden layer)
// learns XOR with the quadratic cost, using forward, backward and SGD
// primitives. Prints the loss before and after training; exits non-zero if
// training did not solve XOR.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <layerwise/layerwise.h>

#define CHECK(call)                                                                         \
  do {                                                                                      \
    lwStatus_t s_ = (call);                                                                 \
    if (s_ != LW_STATUS_SUCCESS) {                                                          \
      std::fprintf(stderr, "%s failed: %s (%s)\n", #call, lwGetErrorString(s_), lwGetLastErrorMessage()); \
      std::exit(1);                                                                         \
    }                                                                                       \
  } while (0)

// A descriptor for a dense row-major (rows, cols) float32 matrix.
static lwTensorDescriptor_t matrix(int rows, int cols) {
  lwTensorDescriptor_t d;
  CHECK(lwCreateTensorDescriptor(&d));
  CHECK(lwSetTensor2dDescriptor(d, LW_FLOAT32, rows, cols, cols));
  return d;
}

int main() {
  const int n = 4, in = 2, hid = 2, out = 1;
  std::vector<float> x = {0, 0, 0, 1, 1, 0, 1, 1};  // (n, in)
  std::vector<float> t = {0, 1, 1, 0};              // (n, out)
  // Fixed initial weights that break the symmetry of the two hidden units.
  std::vector<float> w1 = {0.5f, -0.4f, -0.3f, 0.6f}, b1 = {0.1f, -0.1f};  // (hid, in), (hid)
  std::vector<float> w2 = {0.7f, -0.5f}, b2 = {0.05f};                     // (out, hid), (out)
  std::vector<float> h(n * hid), y(n * out), dy(n * out), dh(n * hid);
  std::vector<float> dw1(hid * in), db1(hid), dw2(out * hid), db2(out);
  std::vector<float> v_w1(hid * in), v_b1(hid), v_w2(out * hid), v_b2(out);  // momentum buffers

  lwHandle_t handle;
  CHECK(lwCreate(&handle, LW_DEVICE_CPU));
  lwTensorDescriptor_t xD = matrix(n, in), hD = matrix(n, hid), yD = matrix(n, out);
  lwTensorDescriptor_t w1D = matrix(hid, in), b1D = matrix(1, hid), w2D = matrix(out, hid), b2D = matrix(1, out);

  auto step = [&](bool update) {
    // Forward: h = sigmoid(x w1^T + b1), y = sigmoid(h w2^T + b2).
    CHECK(lwLinearForward(handle, 1.0, xD, x.data(), w1D, w1.data(), b1D, b1.data(), LW_ACTIVATION_SIGMOID, 0.0,
                          hD, h.data()));
    CHECK(lwLinearForward(handle, 1.0, hD, h.data(), w2D, w2.data(), b2D, b2.data(), LW_ACTIVATION_SIGMOID, 0.0,
                          yD, y.data()));
    double loss = 0;
    CHECK(lwLossForwardBackward(handle, LW_LOSS_QUADRATIC, yD, y.data(), yD, t.data(), &loss, yD, dy.data()));
    if (!update) return loss;
    // Backward through the output sigmoid, the output layer, the hidden sigmoid, the hidden layer.
    CHECK(lwActivationBackward(handle, LW_ACTIVATION_SIGMOID, 1.0, yD, y.data(), yD, dy.data(), nullptr, nullptr,
                               0.0, yD, dy.data()));
    CHECK(lwLinearBackwardWeights(handle, 1.0, yD, dy.data(), hD, h.data(), 0.0, w2D, dw2.data(), b2D, db2.data()));
    CHECK(lwLinearBackwardData(handle, 1.0, yD, dy.data(), w2D, w2.data(), 0.0, hD, dh.data()));
    CHECK(lwActivationBackward(handle, LW_ACTIVATION_SIGMOID, 1.0, hD, h.data(), hD, dh.data(), nullptr, nullptr,
                               0.0, hD, dh.data()));
    CHECK(lwLinearBackwardWeights(handle, 1.0, hD, dh.data(), xD, x.data(), 0.0, w1D, dw1.data(), b1D, db1.data()));
    const double lr = 2.0, momentum = 0.9;
    CHECK(lwSgdUpdate(handle, lr, momentum, 0.0, 0, w1D, w1.data(), dw1.data(), v_w1.data()));
    CHECK(lwSgdUpdate(handle, lr, momentum, 0.0, 0, b1D, b1.data(), db1.data(), v_b1.data()));
    CHECK(lwSgdUpdate(handle, lr, momentum, 0.0, 0, w2D, w2.data(), dw2.data(), v_w2.data()));
    CHECK(lwSgdUpdate(handle, lr, momentum, 0.0, 0, b2D, b2.data(), db2.data(), v_b2.data()));
    return loss;
  };

  const double before = step(false);
  for (int it = 0; it < 2000; ++it) step(true);
  const double after = step(false);
  std::printf("layerwise %zu, CPU ISA %s\n", lwGetVersion(), lwGetActiveIsa());
  std::printf("quadratic loss before: %.6f  after 2000 SGD steps: %.6f\n", before, after);
  int correct = 0;
  for (int i = 0; i < n; ++i) {
    std::printf("  xor(%g, %g) = %.3f (target %g)\n", x[2 * i], x[2 * i + 1], y[i], t[i]);
    correct += (y[i] > 0.5f) == (t[i] > 0.5f);
  }

  for (auto d : {xD, hD, yD, w1D, b1D, w2D, b2D}) lwDestroyTensorDescriptor(d);
  lwDestroy(handle);
  return (after < before && correct == n) ? 0 : 1;
}
