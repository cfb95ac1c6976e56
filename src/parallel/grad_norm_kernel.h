// src/parallel/grad_norm_kernel.h — the element loop of the squared norm,
// torch-free so that it compiles alone (CMakeLists.txt, *_kernel.cpp).
#pragma once
#include <cstdint>

namespace paratorch::parallel {

/// sum x[i]^2 over [0, n): blocks of 1024 fp32 elements, each summed in
/// fp32 with eight independent accumulators, the block sums added in fp64.
double sum_of_squares_range(const float* x, int64_t n);

}  // namespace paratorch::parallel
