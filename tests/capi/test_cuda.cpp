// test_cuda.cpp -- C API tests of the CUDA backend.
//  * Tiling: the index math of the CUDA GEMM (csrc/cuda/tiling.h) checked on the
//    host: every element of a staged slab and of a C tile is covered exactly
//    once, vector accesses stay 16-byte aligned. Runs everywhere.
//  * No GPU: lwCreate(LW_DEVICE_CUDA) fails cleanly with a status and message.
//  * With a GPU (GTEST_SKIP otherwise): CUDA handles against CPU handles on the
//    same inputs, with general alpha/beta, streams and label range errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "../../csrc/cuda/tiling.h"
#include "layerwise/layerwise.h"

#if defined(LAYERWISE_BUILD_WITH_CUDA)  // set by CMakeLists.txt when cudart is linked
#include <cuda_runtime.h>
#define LW_TEST_CUDART 1
#else
#define LW_TEST_CUDART 0
#endif

namespace {

namespace t = lw::cuda::tiling;

// ---- tiling (host only) ---------------------------------------------------------
void check_config(const t::TileConfig &c) {
  SCOPED_TRACE("tile " + std::to_string(c.BM) + "x" + std::to_string(c.BN));
  EXPECT_EQ(c.threads_y() * c.TM, c.BM);
  EXPECT_EQ(c.threads_x() * c.TN, c.BN);
  EXPECT_EQ(c.TM % 4, 0);
  EXPECT_EQ(c.TN % 4, 0);
  EXPECT_LE(c.threads(), 1024);
  for (int R : {c.BM, c.BN}) {
    const int nvec = R * c.BK / 4;
    EXPECT_GE(c.loads(R) * c.threads(), nvec);
    // K-contiguous slab (R, BK): each (row, k) exactly once, inside the slab.
    std::vector<int> seen(R * c.BK, 0);
    for (int v = 0; v < nvec; ++v) {
      const t::Coord co = t::kcontig_vec(v, c.BK);
      ASSERT_LT(co.major, R);
      ASSERT_EQ(co.minor % 4, 0);  // k0 is a multiple of BK: 16-byte aligned vectors
      for (int j = 0; j < 4; ++j) {
        ASSERT_LT(co.minor + j, c.BK);
        seen[co.major * c.BK + co.minor + j]++;
      }
    }
    for (int s : seen) EXPECT_EQ(s, 1);
    // MN-contiguous slab (BK, R).
    std::fill(seen.begin(), seen.end(), 0);
    for (int v = 0; v < nvec; ++v) {
      const t::Coord co = t::mncontig_vec(v, R);
      ASSERT_LT(co.major, c.BK);
      ASSERT_EQ(co.minor % 4, 0);
      for (int j = 0; j < 4; ++j) {
        ASSERT_LT(co.minor + j, R);
        seen[co.major * R + co.minor + j]++;
      }
    }
    for (int s : seen) EXPECT_EQ(s, 1);
    // Shared rows padded by 4 floats stay 16-byte aligned for float4 access.
    EXPECT_EQ(((R + 4) * 4) % 16, 0);
  }
  // Output ownership: rows and columns of the C tile, each exactly once; the
  // float4 shared-memory reads start at multiples of 4.
  for (auto [extent, per, threads] : {std::tuple<int, int, int>{c.BM, c.TM, c.threads_y()},
                                      std::tuple<int, int, int>{c.BN, c.TN, c.threads_x()}}) {
    std::vector<int> seen(extent, 0);
    for (int th = 0; th < threads; ++th)
      for (int i = 0; i < per; ++i) {
        const int o = t::owned_offset(i, th, threads);
        ASSERT_GE(o, 0);
        ASSERT_LT(o, extent);
        if (i % 4 == 0) EXPECT_EQ(o % 4, 0);
        if (i % 4 != 0) EXPECT_EQ(o, t::owned_offset(i - 1, th, threads) + 1);
        seen[o]++;
      }
    for (int s : seen) EXPECT_EQ(s, 1);
  }
}

TEST(CudaTiling, ConfigsCoverTilesExactlyOnce) {
  check_config(t::kBigTile);
  check_config(t::kSmallTile);
  check_config(t::kTf32Tile);  // its BK = 16 slab staging
  EXPECT_EQ(t::kBigTile.threads(), 256);
  EXPECT_EQ(t::kSmallTile.threads(), 128);
  EXPECT_EQ(t::kTf32Tile.threads(), 256);
  // WMMA needs 32-byte aligned fragment pointers: k-step 8 rows of (BM + 4) floats.
  EXPECT_EQ((8 * (t::kTf32Tile.BM + 4) * 4) % 32, 0);
  EXPECT_EQ((8 * (t::kTf32Tile.BN + 4) * 4) % 32, 0);
  EXPECT_EQ((t::kTf32Tile.BK * (t::kTf32Tile.BM + 4) * 4) % 32, 0);  // second buffer
}

TEST(CudaTiling, GridCoversOddSizes) {
  for (int64_t m : {1, 2, 31, 32, 33, 127, 128, 129, 1537}) {
    const int64_t blocks = t::ceil_div(m, 32);
    EXPECT_GE(blocks * 32, m);
    EXPECT_LT((blocks - 1) * 32, m);
  }
  EXPECT_EQ(t::ceil_div(0, 128), 0);
}

TEST(CudaTiling, VectorAccessNeedsAlignedBaseAndLeadingDim) {
  EXPECT_TRUE(t::can_vec4(0x1000, 784, 4));
  EXPECT_FALSE(t::can_vec4(0x1004, 784, 4));  // view starting one float in
  EXPECT_FALSE(t::can_vec4(0x1000, 783, 4));  // odd row stride
  EXPECT_FALSE(t::can_vec4(0x1000, 786, 4));  // 8-byte multiple only
  EXPECT_TRUE(t::can_vec4(0x1000, 2, 8));     // two doubles = 16 bytes
  EXPECT_FALSE(t::can_vec4(0x1000, 3, 8));
}

TEST(CudaTiling, BigTilesOnlyWhenTheyFillTheGpu) {
  EXPECT_FALSE(t::use_big_tile(128, 1000, 132));  // MNIST batch: 8 tiles
  EXPECT_FALSE(t::use_big_tile(1024, 1024, 132));  // 64 tiles
  EXPECT_TRUE(t::use_big_tile(2048, 2048, 132));  // 256 tiles
  EXPECT_TRUE(t::use_big_tile(1537, 1409, 132));  // 13 x 12
}

// ---- without a GPU ----------------------------------------------------------------
TEST(CudaNoGpu, CreateFailsCleanly) {
  if (lwCudaDeviceCount() > 0) GTEST_SKIP() << "a CUDA GPU is present";
  lwHandle_t h = reinterpret_cast<lwHandle_t>(0x1);
  const lwStatus_t st = lwCreate(&h, LW_DEVICE_CUDA);
  EXPECT_NE(st, LW_STATUS_SUCCESS);
  EXPECT_EQ(h, nullptr);
  EXPECT_EQ(st, lwCudaCompiled() ? LW_STATUS_EXECUTION_FAILED : LW_STATUS_NOT_SUPPORTED);
  const std::string msg = lwGetLastErrorMessage();
  EXPECT_FALSE(msg.empty());
  EXPECT_NE(msg.find("CUDA"), std::string::npos) << msg;
  // Still usable afterwards: a CPU handle works, device count stays 0.
  lwHandle_t cpu = nullptr;
  ASSERT_EQ(lwCreate(&cpu, LW_DEVICE_CPU), LW_STATUS_SUCCESS);
  EXPECT_EQ(lwDestroy(cpu), LW_STATUS_SUCCESS);
  EXPECT_EQ(lwCudaDeviceCount(), 0);
}

#if LW_TEST_CUDART
// ---- with a GPU -------------------------------------------------------------------
struct Tensor {
  lwTensorDescriptor_t d = nullptr;
  Tensor(lwDataType_t dt, int64_t r, int64_t c, int64_t ld) {
    EXPECT_EQ(lwCreateTensorDescriptor(&d), LW_STATUS_SUCCESS);
    EXPECT_EQ(lwSetTensor2dDescriptor(d, dt, r, c, ld), LW_STATUS_SUCCESS);
  }
  ~Tensor() { lwDestroyTensorDescriptor(d); }
};

// Device copy of a host vector, freed at scope exit.
template <typename T>
struct Dev {
  T *p = nullptr;
  size_t n;
  explicit Dev(const std::vector<T> &h) : n(h.size()) {
    EXPECT_EQ(cudaMalloc(&p, n * sizeof(T) + 16), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(p, h.data(), n * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  }
  ~Dev() { cudaFree(p); }
  std::vector<T> get() const {
    std::vector<T> h(n);
    EXPECT_EQ(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return h;
  }
};

class CudaHandle : public ::testing::Test {
 protected:
  void SetUp() override {
    if (lwCudaDeviceCount() == 0) GTEST_SKIP() << "no CUDA GPU or driver";
    ASSERT_EQ(lwCreate(&gpu, LW_DEVICE_CUDA), LW_STATUS_SUCCESS) << lwGetLastErrorMessage();
    ASSERT_EQ(lwCreate(&cpu, LW_DEVICE_CPU), LW_STATUS_SUCCESS);
  }
  void TearDown() override {
    if (gpu) lwDestroy(gpu);
    if (cpu) lwDestroy(cpu);
  }
  lwHandle_t gpu = nullptr, cpu = nullptr;
};

template <typename T>
std::vector<T> random_vec(size_t n, unsigned seed, double lo = -1, double hi = 1) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<T> v(n);
  for (auto &x : v) x = (T)u(g);
  return v;
}

template <typename T>
void expect_close(const std::vector<T> &got, const std::vector<T> &want, double rtol, double atol) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_LE(std::fabs((double)got[i] - (double)want[i]), atol + rtol * std::fabs((double)want[i]))
        << "at " << i << ": " << got[i] << " vs " << want[i];
}

// y = alpha * act(x w^T + b) + beta * y with general alpha/beta, strided y.
template <typename T>
void linear_alpha_beta(lwHandle_t gpu, lwHandle_t cpu, lwDataType_t dt, double tol) {
  const int64_t n = 67, in = 45, out = 131, ldy = 133;
  auto x = random_vec<T>(n * in, 1), w = random_vec<T>(out * in, 2), b = random_vec<T>(out, 3);
  auto y0 = random_vec<T>(n * ldy, 4);
  Tensor xd(dt, n, in, in), wd(dt, out, in, in), bd(dt, 1, out, out), yd(dt, n, out, ldy);
  std::vector<T> ycpu = y0;
  ASSERT_EQ(lwLinearForward(cpu, 0.5, xd.d, x.data(), wd.d, w.data(), bd.d, b.data(),
                            LW_ACTIVATION_SIGMOID, 2.0, yd.d, ycpu.data()),
            LW_STATUS_SUCCESS);
  Dev<T> X(x), W(w), B(b), Y(y0);
  ASSERT_EQ(lwLinearForward(gpu, 0.5, xd.d, X.p, wd.d, W.p, bd.d, B.p, LW_ACTIVATION_SIGMOID, 2.0,
                            yd.d, Y.p),
            LW_STATUS_SUCCESS)
      << lwGetLastErrorMessage();
  expect_close(Y.get(), ycpu, tol, tol);

  // dw = 0.25 * dy^T x + 1.5 * dw; db likewise.
  auto dy = random_vec<T>(n * out, 5), dw0 = random_vec<T>(out * in, 6), db0 = random_vec<T>(out, 7);
  Tensor dyd(dt, n, out, out), dwd(dt, out, in, in);
  std::vector<T> dwc = dw0, dbc = db0;
  ASSERT_EQ(lwLinearBackwardWeights(cpu, 0.25, dyd.d, dy.data(), xd.d, x.data(), 1.5, dwd.d,
                                    dwc.data(), bd.d, dbc.data()),
            LW_STATUS_SUCCESS);
  Dev<T> DY(dy), DW(dw0), DB(db0);
  ASSERT_EQ(lwLinearBackwardWeights(gpu, 0.25, dyd.d, DY.p, xd.d, X.p, 1.5, dwd.d, DW.p, bd.d, DB.p),
            LW_STATUS_SUCCESS)
      << lwGetLastErrorMessage();
  expect_close(DW.get(), dwc, tol, tol);
  expect_close(DB.get(), dbc, tol, tol);

  // dx = -1 * dy w + 0.5 * dx
  auto dx0 = random_vec<T>(n * in, 8);
  std::vector<T> dxc = dx0;
  ASSERT_EQ(lwLinearBackwardData(cpu, -1.0, dyd.d, dy.data(), wd.d, w.data(), 0.5, xd.d, dxc.data()),
            LW_STATUS_SUCCESS);
  Dev<T> DX(dx0);
  ASSERT_EQ(lwLinearBackwardData(gpu, -1.0, dyd.d, DY.p, wd.d, W.p, 0.5, xd.d, DX.p),
            LW_STATUS_SUCCESS);
  expect_close(DX.get(), dxc, tol, tol);
}

TEST_F(CudaHandle, LinearAlphaBetaFloat32) { linear_alpha_beta<float>(gpu, cpu, LW_FLOAT32, 2e-4); }
TEST_F(CudaHandle, LinearAlphaBetaFloat64) { linear_alpha_beta<double>(gpu, cpu, LW_FLOAT64, 1e-11); }

TEST_F(CudaHandle, ActivationAlphaBetaOnStream) {
  cudaStream_t s = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_EQ(lwSetStream(gpu, s), LW_STATUS_SUCCESS);
  void *got = nullptr;
  ASSERT_EQ(lwGetStream(gpu, &got), LW_STATUS_SUCCESS);
  EXPECT_EQ(got, (void *)s);
  const int64_t r = 33, c = 65;
  auto x = random_vec<float>(r * c, 9, -3, 3), y0 = random_vec<float>(r * c, 10);
  Tensor d(LW_FLOAT32, r, c, c);
  std::vector<float> yc = y0;
  ASSERT_EQ(lwActivationForward(cpu, LW_ACTIVATION_TANH, 3.0, d.d, x.data(), -1.0, d.d, yc.data()),
            LW_STATUS_SUCCESS);
  Dev<float> X(x), Y(y0);
  ASSERT_EQ(lwActivationForward(gpu, LW_ACTIVATION_TANH, 3.0, d.d, X.p, -1.0, d.d, Y.p),
            LW_STATUS_SUCCESS);
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  expect_close(Y.get(), yc, 1e-5, 1e-5);
  ASSERT_EQ(lwSetStream(gpu, nullptr), LW_STATUS_SUCCESS);
  cudaStreamDestroy(s);
}

TEST_F(CudaHandle, SoftmaxCrossEntropyBadLabel) {
  const int64_t n = 5, c = 4;
  std::vector<float> logits(n * c, 0.f);
  std::vector<int32_t> labels = {0, 1, 4, 2, -1};
  Tensor pd(LW_FLOAT32, n, c, c), td(LW_INT32, n, 1, 1);
  Dev<float> P(logits), G(logits);
  Dev<int32_t> L(labels);
  double loss = 0;
  EXPECT_EQ(lwLossForwardBackward(gpu, LW_LOSS_SOFTMAX_CROSS_ENTROPY, pd.d, P.p, td.d, L.p, &loss,
                                  pd.d, G.p),
            LW_STATUS_BAD_PARAM);
  EXPECT_TRUE(std::isnan(loss));
  const std::string msg = lwGetLastErrorMessage();
  EXPECT_NE(msg.find("class id 4 at row 2"), std::string::npos) << msg;
  // Valid labels afterwards: log(4) per row.
  Dev<int32_t> L2(std::vector<int32_t>{0, 1, 2, 3, 0});
  EXPECT_EQ(lwLossForwardBackward(gpu, LW_LOSS_SOFTMAX_CROSS_ENTROPY, pd.d, P.p, td.d, L2.p, &loss,
                                  pd.d, G.p),
            LW_STATUS_SUCCESS);
  EXPECT_NEAR(loss, std::log(4.0), 1e-12);
}

TEST_F(CudaHandle, LossesMatchCpu) {
  const int64_t n = 123, c = 77;
  auto p = random_vec<double>(n * c, 11, 0, 1), t = random_vec<double>(n * c, 12, 0, 1);
  Tensor d(LW_FLOAT64, n, c, c);
  for (lwLossMode_t mode : {LW_LOSS_QUADRATIC, LW_LOSS_BINARY_CROSS_ENTROPY}) {
    std::vector<double> gc(n * c);
    double vc = 0, vg = 0;
    ASSERT_EQ(lwLossForwardBackward(cpu, mode, d.d, p.data(), d.d, t.data(), &vc, d.d, gc.data()),
              LW_STATUS_SUCCESS);
    Dev<double> P(p), T(t), G(gc);
    ASSERT_EQ(lwLossForwardBackward(gpu, mode, d.d, P.p, d.d, T.p, &vg, d.d, G.p), LW_STATUS_SUCCESS);
    EXPECT_NEAR(vg, vc, 1e-12 * std::fabs(vc));
    expect_close(G.get(), gc, 1e-13, 1e-15);
  }
}

TEST_F(CudaHandle, BernoulliIdenticalToCpu) {
  const int64_t r = 37, c = 101;
  auto p = random_vec<float>(r * c, 13, 0, 1);
  Tensor d(LW_FLOAT32, r, c, c);
  std::vector<float> yc(r * c);
  ASSERT_EQ(lwBernoulliSample(cpu, 42, 1000, d.d, p.data(), 0.0, d.d, yc.data()), LW_STATUS_SUCCESS);
  Dev<float> P(p), Y(yc);
  ASSERT_EQ(lwBernoulliSample(gpu, 42, 1000, d.d, P.p, 0.0, d.d, Y.p), LW_STATUS_SUCCESS);
  EXPECT_EQ(Y.get(), yc);
}
#endif  // LW_TEST_CUDART

}  // namespace
