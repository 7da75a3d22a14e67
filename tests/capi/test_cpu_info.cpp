// The CPU description and the GEMM blocking entry points of the C API.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>

#include "layerwise/layerwise.h"

namespace {

TEST(CpuInfo, DescribesThisCpu) {
  lwCpuInfo_t info;
  ASSERT_EQ(lwGetCpuInfo(&info), LW_STATUS_SUCCESS) << lwGetLastErrorMessage();
  EXPECT_STREQ(info.isa, lwGetActiveIsa());
  EXPECT_GT(info.caches.l1d_bytes, 0);
  EXPECT_GE(info.logical_cpus, 1);
  if (std::strcmp(info.isa, "generic") != 0) {
    EXPECT_GT(info.gemm_f32.kc, 0);
    EXPECT_EQ(info.gemm_f32.mc % info.gemm_f32.mr, 0);
    EXPECT_EQ(info.gemm_f64.nc % info.gemm_f64.nr, 0);
  }
}

TEST(CpuInfo, RejectsNull) {
  EXPECT_EQ(lwGetCpuInfo(nullptr), LW_STATUS_BAD_PARAM);
  EXPECT_NE(std::strstr(lwGetLastErrorMessage(), "info"), nullptr);
}

TEST(CpuInfo, DerivesBlockingForGivenCaches) {
  // Emerald Rapids-like: 48 KiB 12-way L1d, 2 MiB L2, 5 MiB of L3 per core.
  lwCacheSizes_t c{48 << 10, 12, 2 << 20, 16, 160 << 20, 5 << 20};
  lwGemmBlocking_t b;
  ASSERT_EQ(lwDeriveGemmBlocking(&c, "avx512", LW_FLOAT32, &b), LW_STATUS_SUCCESS) << lwGetLastErrorMessage();
  EXPECT_EQ(b.mr, 12);
  EXPECT_EQ(b.nr, 32);
  EXPECT_EQ(b.kc, 256);   // 48K * 11/12 / ((12 + 32) * 4)
  EXPECT_EQ(b.mc, 1020);  // 1 MiB / (256 * 4) = 1024, down to a multiple of 12
  EXPECT_EQ(b.nc % 32, 0);
  EXPECT_LE(b.nc * b.kc * 4, (5 << 20) / 2);
}

TEST(CpuInfo, DeriveValidatesArguments) {
  lwCacheSizes_t c{32 << 10, 8, 512 << 10, 8, 0, 0};
  lwGemmBlocking_t b;
  EXPECT_EQ(lwDeriveGemmBlocking(nullptr, "avx2", LW_FLOAT32, &b), LW_STATUS_BAD_PARAM);
  EXPECT_EQ(lwDeriveGemmBlocking(&c, "avx2", LW_FLOAT32, nullptr), LW_STATUS_BAD_PARAM);
  EXPECT_EQ(lwDeriveGemmBlocking(&c, "neon", LW_FLOAT32, &b), LW_STATUS_BAD_PARAM);
  EXPECT_EQ(lwDeriveGemmBlocking(&c, nullptr, LW_FLOAT32, &b), LW_STATUS_BAD_PARAM);
  EXPECT_EQ(lwDeriveGemmBlocking(&c, "avx2", LW_INT32, &b), LW_STATUS_BAD_PARAM);
  c.l2_bytes = -1;
  EXPECT_EQ(lwDeriveGemmBlocking(&c, "avx2", LW_FLOAT32, &b), LW_STATUS_BAD_PARAM);
  EXPECT_NE(std::strstr(lwGetLastErrorMessage(), "caches"), nullptr);
}

TEST(CpuInfo, SetGemmBlockingValidatesAppliesAndResets) {
  lwGemmBlocking_t bad{0, 256, 512, 0, 0};
  EXPECT_EQ(lwSetGemmBlocking(LW_FLOAT32, LW_GEMM_SHAPE_BATCH, &bad), LW_STATUS_BAD_PARAM);
  EXPECT_NE(std::strstr(lwGetLastErrorMessage(), "mc"), nullptr);
  lwGemmBlocking_t ok{100, 128, 500, 0, 0};
  EXPECT_EQ(lwSetGemmBlocking(LW_INT32, LW_GEMM_SHAPE_BATCH, &ok), LW_STATUS_BAD_PARAM);
  EXPECT_EQ(lwSetGemmBlocking(LW_FLOAT32, (lwGemmShapeClass_t)5, &ok), LW_STATUS_BAD_PARAM);
  lwCpuInfo_t info;
  ASSERT_EQ(lwGetCpuInfo(&info), LW_STATUS_SUCCESS);
  if (std::strcmp(info.isa, "generic") == 0 || std::getenv("LAYERWISE_GEMM_BLOCKS")) GTEST_SKIP();
  ASSERT_EQ(lwSetGemmBlocking(LW_FLOAT32, LW_GEMM_SHAPE_BATCH, &ok), LW_STATUS_SUCCESS);
  ASSERT_EQ(lwGetCpuInfo(&info), LW_STATUS_SUCCESS);
  EXPECT_STREQ(info.gemm_source, "tuned");
  EXPECT_EQ(info.gemm_f32.kc, 128);
  EXPECT_EQ(info.gemm_f32.mc % info.gemm_f32.mr, 0);  // rounded up to the tile
  EXPECT_GE(info.gemm_f32.mc, 100);
  ASSERT_EQ(lwSetGemmBlocking(LW_FLOAT32, LW_GEMM_SHAPE_BATCH, nullptr), LW_STATUS_SUCCESS);
  ASSERT_EQ(lwGetCpuInfo(&info), LW_STATUS_SUCCESS);
  EXPECT_STREQ(info.gemm_source, "analytical");
}

}  // namespace
