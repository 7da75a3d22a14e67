// optimizer_kernels.h -- the extern entry points of the per-ISA optimizer TUs
// (optimizer_avx2.cpp, optimizer_avx512.cpp), called through LW_ISA_DISPATCH
// (kernels.h). Each returns false when it does not handle the case.
#pragma once

#include "../common/backend.h"

namespace lw::cpu {

#ifdef LAYERWISE_HAVE_AVX512
bool optimizer_step_avx512(const OptimizerStepArgs &a, int nthreads);
#endif
#ifdef LAYERWISE_HAVE_AVX2
bool optimizer_step_avx2(const OptimizerStepArgs &a, int nthreads);
#endif

}  // namespace lw::cpu
