// isa.h -- which instruction-set variant of the CPU kernels runs (see isa.cpp).
#pragma once

namespace lw::cpu {

enum class Isa : int { Generic = 0, Avx2 = 1, Avx512 = 2 };

// Chosen once per process: the best the CPU supports among the variants compiled
// in, lowered by LAYERWISE_ISA=generic|avx2|avx512 when set.
Isa active();
const char *isa_name(Isa isa);

}  // namespace lw::cpu
