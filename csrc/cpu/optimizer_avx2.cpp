// optimizer_avx2.cpp -- the optimizer pass for AVX2 + FMA (see simd/optimizer.h).
#if defined(__AVX2__) && defined(__FMA__)
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
#define LW_VEC_BYTES 32
#include "simd/optimizer.h"
#undef LW_VEC_BYTES
}  // namespace

bool optimizer_step_avx2(const OptimizerStepArgs &a, int nthreads) {
  if (a.dtype == DType::F32) vector_optimizer_step<float>(a, nthreads);
  else vector_optimizer_step<double>(a, nthreads);
  return true;
}

}  // namespace lw::cpu
#endif
