// capi_testing.h -- what every C API test file shares: a status assertion that
// prints the library's message, a self-destroying tensor descriptor, and a
// fixture holding a CPU handle.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>

#include "layerwise/layerwise.h"

#define LW_OK(expr) ASSERT_EQ((expr), LW_STATUS_SUCCESS) << lwGetLastErrorMessage()

namespace lw_test {

struct Desc {
  lwTensorDescriptor_t d = nullptr;
  Desc() { lwCreateTensorDescriptor(&d); }
  Desc(lwDataType_t t, int64_t r, int64_t c, int64_t ld = -1) : Desc() {
    lwSetTensor2dDescriptor(d, t, r, c, ld < 0 ? c : ld);
  }
  Desc(const Desc &) = delete;
  Desc &operator=(const Desc &) = delete;
  ~Desc() { lwDestroyTensorDescriptor(d); }
  operator lwTensorDescriptor_t() const { return d; }
};

class CpuHandleTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(lwCreate(&h, LW_DEVICE_CPU), LW_STATUS_SUCCESS); }
  void TearDown() override { lwDestroy(h); }
  lwHandle_t h = nullptr;
};

}  // namespace lw_test
