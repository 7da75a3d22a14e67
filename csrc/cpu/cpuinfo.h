// cpuinfo.h -- what the CPU reports about itself (model name, data-cache sizes)
// and the GEMM cache blocking derived from it (see cpuinfo.cpp for the model).
// Plain declarations and constants only: the ISA translation units include this
// header, so it must not carry inline code (see simd_impl.h on the ODR trap).
#pragma once

#include <cstdint>

#include "isa.h"

namespace lw::cpu {

// One data (or unified) cache level. bytes == 0: the level is absent or unknown.
struct CacheLevel {
  int64_t bytes = 0;
  int ways = 0;         // associativity; 0 when unknown
  int shared_cpus = 1;  // logical CPUs sharing one instance
};

struct CacheInfo {
  CacheLevel l1d, l2, l3;
  int smt = 1;                // logical CPUs per core (those sharing the L1d)
  int64_t l3_per_core = 0;    // l3.bytes / cores sharing it; 0 without an L3
  const char *source = "";    // "sysfs", "cpuid" or "default"
};

// The GEMM register tile of each ISA and element type: MR rows x NR columns of C.
// The traits of kernels_avx512.cpp / kernels_avx2.cpp are built from these.
struct MicroTile {
  int mr, nr;
};
constexpr MicroTile kTileAvx512F32{12, 32}, kTileAvx512F64{12, 16};
constexpr MicroTile kTileAvx2F32{6, 16}, kTileAvx2F64{6, 8};
// The register tile of `isa` for elements of elem_bytes (4 or 8); {0, 0} for the
// generic ISA, whose reference product is not blocked.
MicroTile micro_tile(Isa isa, int elem_bytes);

// MC x KC: the block of op(A) kept in L2; KC x NR: the micro-panel of op(B) kept
// in L1; KC x NC: the block of op(B) a thread packs (L3). MC is a multiple of MR
// and NC of NR. A plain aggregate (no member initializers): an implicit
// constructor would be inline code emitted in the ISA units.
struct GemmBlocks {
  int64_t mc, kc, nc;
};

// Detected once per process (sysfs, else cpuid leaf 4 / 0x8000001D, else a
// conservative default).
const CacheInfo &cache_info();
// The CPU's brand string ("" when unknown), detected once.
const char *cpu_model();

// The analytical blocking for these caches and this register tile.
GemmBlocks derive_gemm_blocks(const CacheInfo &caches, int elem_bytes, MicroTile tile);

// LAYERWISE_GEMM_BLOCKS="mc,kc,nc" (three decimal integers, nothing else):
// returns 0 when unset, 1 and fills *raw when valid, -1 and fills why[0..n) when
// malformed. Read once per process.
int gemm_blocks_env(GemmBlocks *raw, const char **why);

// Shape classes of the packed GEMM (lwGemmShapeClass_t): square when M, N, K >= 512.
constexpr int kShapeBatch = 0, kShapeSquare = 1;
int shape_class(int64_t M, int64_t N, int64_t K);

// Strict range check of a blocking (the rules of LAYERWISE_GEMM_BLOCKS); null
// when valid, else the reason.
const char *check_blocks(int64_t mc, int64_t kc, int64_t nc);
// The process-wide tuned blocking of one element size and shape class
// (lwSetGemmBlocking); set = false forgets it.
void set_tuned_blocks(int elem_bytes, int shape, bool set, GemmBlocks blocks);

// The blocking the packed GEMM uses for this tile and shape class:
// LAYERWISE_GEMM_BLOCKS when set and valid, else the tuned one when set, else
// the analytical one (mc, nc rounded up to multiples of mr, nr).
// *source (may be null) gets "env", "tuned" or "analytical".
GemmBlocks gemm_blocks(int elem_bytes, MicroTile tile, int shape, const char **source);

}  // namespace lw::cpu
