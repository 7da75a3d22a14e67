// tiling.h -- the index math of the CUDA GEMM tiles, as plain __host__ __device__
// functions so that a host-only C++ test (tests/capi/test_cuda.cpp) can check
// coverage, bounds and alignment rules without a GPU. No CUDA headers needed.
//
// A block computes a BM x BN tile of C (M, N) and walks K in steps of BK.
// Operands are staged in shared memory "k-major": As[k][m] (BK, BM) and
// Bs[k][n] (BK, BN), so that a thread reads its TM (TN) consecutive values of
// one k as float4s. Global loads come in 4-element vectors along the operand's
// contiguous dimension:
//   K-contiguous operand (x and dy as A, w as B in x w^T): a (R, BK) slab of
//     R rows; vector v covers row v / (BK/4), k-columns 4 * (v % (BK/4)) ..+3.
//   MN-contiguous operand (w as B in dy w, dy^T and x in dy^T x): a (BK, R)
//     slab; vector v covers k-row v / (R/4), columns 4 * (v % (R/4)) ..+3.
// Thread (ty, tx) owns TM x TN outputs in groups of 4 consecutive rows/cols
// spaced THREADS*4 apart (so the float4 reads of one warp hit consecutive
// shared-memory words): row offset of its i-th value = (i/4)*TY*4 + ty*4 + i%4.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define LW_TILE_HD __host__ __device__ __forceinline__
#else
#define LW_TILE_HD inline
#endif

namespace lw::cuda::tiling {

LW_TILE_HD constexpr int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

struct Coord {
  int major;  // row of the staged slab: operand row (K-contiguous) or k (MN-contiguous)
  int minor;  // first of 4 consecutive elements along the contiguous dimension
};

// Vector v of a K-contiguous (R, BK) slab.
LW_TILE_HD Coord kcontig_vec(int v, int BK) { return {v / (BK / 4), 4 * (v % (BK / 4))}; }

// Vector v of an MN-contiguous (BK, R) slab.
LW_TILE_HD Coord mncontig_vec(int v, int R) { return {v / (R / 4), 4 * (v % (R / 4))}; }

// Offset inside the tile (0 .. T*threads-1) of a thread's i-th output along one axis,
// where `threads` threads share that axis and each owns `per_thread` (multiple of 4) values.
LW_TILE_HD int owned_offset(int i, int t, int threads) {
  return (i / 4) * threads * 4 + t * 4 + (i % 4);
}

// A 16-byte vector access at base + row * ld + 4j is aligned for every row and j
// exactly when the base is 16-byte aligned and a row is a whole number of 16 bytes.
LW_TILE_HD bool can_vec4(uintptr_t base, int64_t ld, int64_t elem_bytes) {
  return base % 16 == 0 && (ld * elem_bytes) % 16 == 0;
}

// Tile shapes used by the float32 kernel (gemm.cu instantiates exactly these).
struct TileConfig {
  int BM, BN, BK, TM, TN;
  LW_TILE_HD constexpr int threads_y() const { return BM / TM; }
  LW_TILE_HD constexpr int threads_x() const { return BN / TN; }
  LW_TILE_HD constexpr int threads() const { return threads_y() * threads_x(); }
  // Vector loads per thread to stage a (R, BK) slab.
  LW_TILE_HD constexpr int loads(int R) const { return (R * BK / 4 + threads() - 1) / threads(); }
};
constexpr TileConfig kBigTile{128, 128, 8, 8, 8};  // 256 threads, 8x8 outputs each
constexpr TileConfig kSmallTile{32, 64, 8, 4, 4};  // 128 threads, 4x4 outputs each
// TF32 tensor-core tile (gemm_tf32.cu): 256 threads = 8 warps in a 2 x 4 grid, each
// warp 64 x 32 outputs as 4 x 2 WMMA 16x16 fragments. TM/TN only size the thread
// count here (the accumulators live in WMMA fragments); the slab staging is shared.
constexpr TileConfig kTf32Tile{128, 128, 16, 8, 8};
constexpr int kTf32WarpsM = 2, kTf32WarpsN = 4, kTf32WarpM = 64, kTf32WarpN = 32;
static_assert(kTf32WarpsM * kTf32WarpM == kTf32Tile.BM && kTf32WarpsN * kTf32WarpN == kTf32Tile.BN,
              "the warp grid covers the tile");
static_assert(kTf32WarpsM * kTf32WarpsN * 32 == kTf32Tile.threads(), "one warp per grid cell");

// Big tiles only when they alone fill the GPU; otherwise smaller tiles give
// more blocks (e.g. n = 32 or 128 rows against 132 SMs).
LW_TILE_HD bool use_big_tile(int64_t M, int64_t N, int sm_count) {
  return ceil_div(M, kBigTile.BM) * ceil_div(N, kBigTile.BN) >= sm_count;
}

}  // namespace lw::cuda::tiling
