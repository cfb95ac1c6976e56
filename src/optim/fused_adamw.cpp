// src/optim/fused_adamw.cpp — see fused_adamw.h; the loop itself is in
// fused_adamw_kernel.cpp.
#include "optim/fused_adamw.h"

#include <ATen/Parallel.h>

namespace paratorch::optim {

void fused_adamw_step(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, int64_t n,
                      const AdamWStepScalars& s) {
  // 64k elements per task: large enough that thread hand-off is noise.
  at::parallel_for(0, n, 1 << 16, [&](int64_t begin, int64_t end) {
    adamw_range(param, grad, exp_avg, exp_avg_sq, begin, end, s);
  });
}

}  // namespace paratorch::optim
