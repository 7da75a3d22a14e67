// fused_sgd_avx2.cpp -- the fused backward + SGD kernel for AVX2 + FMA (see fused_sgd_kernel.h).
#if defined(__AVX2__) && defined(__FMA__)
#define LW_VEC_BYTES 32
#define LW_ISA_SUFFIX avx2
#include "fused_sgd_kernel.h"
#endif
