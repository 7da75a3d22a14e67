// optimizer_avx512.cpp -- the optimizer pass for AVX-512 (see simd/optimizer.h).
#if defined(__AVX512F__)
#include <immintrin.h>
#include <stdint.h>

#include "../common/backend.h"
#include "../common/optimizer_math.h"
#include "optimizer_kernels.h"
#include "threadpool.h"

namespace lw::cpu {
namespace {
#define LW_OPTIMIZER_SEGMENTS_IN_ANON_NS
#include "optimizer_segments.h"
#undef LW_OPTIMIZER_SEGMENTS_IN_ANON_NS
#define LW_VEC_BYTES 64
#include "simd/optimizer.h"
#undef LW_VEC_BYTES
}  // namespace

bool optimizer_step_avx512(const OptimizerStepArgs &a, int nthreads) {
  if (a.dtype == DType::F32) vector_optimizer_step<float>(a, nthreads);
  else vector_optimizer_step<double>(a, nthreads);
  return true;
}

}  // namespace lw::cpu
#endif
