// fused_sgd_avx512.cpp -- the fused backward + SGD kernel for AVX-512 (see fused_sgd_kernel.h).
#if defined(__AVX512F__)
#define LW_VEC_BYTES 64
#define LW_ISA_SUFFIX avx512
#include "fused_sgd_kernel.h"
#endif
