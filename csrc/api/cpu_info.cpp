// cpu_info.cpp -- the C API's CPU description and GEMM blocking entry points
// (lwGetCpuInfo, lwSetGemmBlocking, lwDeriveGemmBlocking); the work is in csrc/cpu/cpuinfo.cpp.
#include <cstring>
#include <exception>
#include <string>

#include "../common/backend.h"

namespace {

template <typename F>
lwStatus_t guarded_call(F &&f) {
  try {
    return f();
  } catch (const std::exception &e) {
    return lw::fail(LW_STATUS_INTERNAL_ERROR, std::string("internal error: ") + e.what());
  } catch (...) {
    return lw::fail(LW_STATUS_INTERNAL_ERROR, "internal error: unknown exception");
  }
}

bool nonneg_fits(int64_t bytes, int64_t limit) { return bytes >= 0 && bytes <= limit; }

}  // namespace

extern "C" {

lwStatus_t lwGetCpuInfo(lwCpuInfo_t *info) {
  return guarded_call([&] {
    if (!info) return lw::fail(LW_STATUS_BAD_PARAM, "info: output pointer is NULL");
    return lw::cpu::describe_cpu(info);
  });
}

lwStatus_t lwSetGemmBlocking(lwDataType_t dtype, lwGemmShapeClass_t shape, const lwGemmBlocking_t *blocking) {
  return guarded_call([&] {
    int dt, sh;
    std::memcpy(&dt, &dtype, sizeof dt);  // C callers may pass any int
    std::memcpy(&sh, &shape, sizeof sh);
    if (dt != LW_FLOAT32 && dt != LW_FLOAT64)
      return lw::fail(LW_STATUS_BAD_PARAM, "dtype: must be LW_FLOAT32 or LW_FLOAT64");
    if (sh != LW_GEMM_SHAPE_BATCH && sh != LW_GEMM_SHAPE_SQUARE)
      return lw::fail(LW_STATUS_BAD_PARAM, "shape: must be LW_GEMM_SHAPE_BATCH or LW_GEMM_SHAPE_SQUARE");
    return lw::cpu::set_gemm_blocking(dt == LW_FLOAT32 ? lw::DType::F32 : lw::DType::F64, sh, blocking);
  });
}

lwStatus_t lwDeriveGemmBlocking(const lwCacheSizes_t *caches, const char *isa, lwDataType_t dtype,
                                lwGemmBlocking_t *blocking) {
  return guarded_call([&] {
    if (!caches) return lw::fail(LW_STATUS_BAD_PARAM, "caches: pointer is NULL");
    if (!blocking) return lw::fail(LW_STATUS_BAD_PARAM, "blocking: output pointer is NULL");
    if (!isa || (std::strcmp(isa, "avx2") != 0 && std::strcmp(isa, "avx512") != 0))
      return lw::fail(LW_STATUS_BAD_PARAM, "isa: must be \"avx2\" or \"avx512\"");
    int dt;
    std::memcpy(&dt, &dtype, sizeof dt);  // C callers may pass any int
    if (dt != LW_FLOAT32 && dt != LW_FLOAT64)
      return lw::fail(LW_STATUS_BAD_PARAM, "dtype: must be LW_FLOAT32 or LW_FLOAT64");
    const int64_t kTiB = (int64_t)1 << 40;
    if (!nonneg_fits(caches->l1d_bytes, kTiB) || !nonneg_fits(caches->l2_bytes, kTiB) ||
        !nonneg_fits(caches->l3_bytes, kTiB) || !nonneg_fits(caches->l3_bytes_per_core, kTiB))
      return lw::fail(LW_STATUS_BAD_PARAM, "caches: sizes must be in [0, 2^40] bytes");
    if (caches->l1d_ways < 0 || caches->l1d_ways > 1024 || caches->l2_ways < 0 || caches->l2_ways > 1024)
      return lw::fail(LW_STATUS_BAD_PARAM, "caches: ways must be in [0, 1024]");
    return lw::cpu::derive_gemm_blocking(*caches, std::strcmp(isa, "avx512") == 0,
                                         dt == LW_FLOAT32 ? lw::DType::F32 : lw::DType::F64, blocking);
  });
}

}  // extern "C"
