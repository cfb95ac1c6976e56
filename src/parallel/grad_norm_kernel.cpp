// src/parallel/grad_norm_kernel.cpp — the element loop of the squared gradient norm.
//
// Torch-free, compiled alone (CMakeLists.txt, *_kernel.cpp). Blocks of
// kBlock elements are summed in fp32 with eight independent accumulators
// (independent lanes, so gcc vectorizes without reassociating anything);
// the block sums are added in fp64. One read of the gradient, no temporary:
// `g.pow(2).sum()` writes and rereads a copy of it.
#include "parallel/grad_norm_kernel.h"

#include <algorithm>

namespace paratorch::parallel {

double sum_of_squares_range(const float* __restrict x, int64_t n) {
  constexpr int64_t kBlock = 1024;
  double total = 0;
  for (int64_t begin = 0; begin < n; begin += kBlock) {
    const int64_t end = std::min(n, begin + kBlock);
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = begin;
    for (; i + 8 <= end; i += 8)
      for (int k = 0; k < 8; ++k) acc[k] += x[i + k] * x[i + k];
    float block = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < end; ++i) block += x[i] * x[i];
    total += block;
  }
  return total;
}

}  // namespace paratorch::parallel
