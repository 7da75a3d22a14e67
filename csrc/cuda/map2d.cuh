// map2d.cuh -- the launch pattern shared by the elementwise kernels: a functor
// op(r, c) applied to every element of a (rows, cols) strided matrix, with
// grid-stride loops in both dimensions so any shape fits the grid limits.
// When every operand is contiguous (ld == cols) the matrix is walked as one
// long row, which keeps all threads busy for narrow matrices; the functor then
// sees r == 0 and c == the flat index (r * cols + c), which every op here
// treats identically.
#pragma once

#include "cuda_common.h"

namespace lw::cuda {

template <typename Op>
__global__ void __launch_bounds__(256) map2d_kernel(int64_t rows, int64_t cols, const Op op) {
  const int64_t cstep = (int64_t)gridDim.x * blockDim.x;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y)
    for (int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; c < cols; c += cstep) op(r, c);
}

template <typename Op>
lwStatus_t launch_map2d(const CudaContext &ctx, int64_t rows, int64_t cols, bool contiguous,
                        const Op &op, const char *what) {
  if (rows == 0 || cols == 0) return LW_STATUS_SUCCESS;
  if (contiguous) {
    cols *= rows;
    rows = 1;
  }
  const Launch2d l = launch_2d(rows, cols);
  map2d_kernel<Op><<<l.grid, l.block, 0, stream_of(ctx)>>>(rows, cols, op);
  return check_launch(what);
}

}  // namespace lw::cuda
