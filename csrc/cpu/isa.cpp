// isa.cpp -- CPU feature detection and the LAYERWISE_ISA override.
// The default build targets baseline x86-64; kernels compiled for AVX2+FMA or
// AVX-512 are chosen here at run time.
#include <cstdlib>
#include <cstring>
#include <string>

#include "../common/backend.h"
#include "isa.h"

namespace lw::cpu {

namespace {

bool cpu_has_avx2_fma() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

bool cpu_has_avx512() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
#else
  return false;
#endif
}

Isa detect() {
  Isa best = Isa::Generic;
#ifdef LAYERWISE_HAVE_AVX2
  if (cpu_has_avx2_fma()) best = Isa::Avx2;
#endif
#ifdef LAYERWISE_HAVE_AVX512
  if (cpu_has_avx512()) best = Isa::Avx512;
#endif
  // LAYERWISE_ISA may lower the choice (never raise it above what the CPU has).
  if (const char *env = std::getenv("LAYERWISE_ISA")) {
    if (!std::strcmp(env, "generic")) best = Isa::Generic;
    else if (!std::strcmp(env, "avx2") && best >= Isa::Avx2) best = Isa::Avx2;
    else if (!std::strcmp(env, "avx512") && best >= Isa::Avx512) best = Isa::Avx512;
  }
  return best;
}

}  // namespace

Isa active() {
  static const Isa isa = detect();
  return isa;
}

const char *isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    default: return "generic";
  }
}

const char *compiled_isas() {
  return "generic"
#ifdef LAYERWISE_HAVE_AVX2
         ",avx2"
#endif
#ifdef LAYERWISE_HAVE_AVX512
         ",avx512"
#endif
      ;
}

const char *active_isa() { return isa_name(active()); }

}  // namespace lw::cpu
