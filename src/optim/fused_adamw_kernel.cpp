// src/optim/fused_adamw_kernel.cpp — the element loop of fused AdamW.
//
// Torch-free and built with -fno-math-errno (CMakeLists.txt, *_kernel.cpp):
// gcc vectorizes sqrtf only when it need not set errno, and that flag must
// not reach the rest of the library.
#include "optim/fused_adamw.h"

#include <cmath>

namespace paratorch::optim {

void adamw_range(float* __restrict p, const float* __restrict g, float* __restrict m, float* __restrict v,
                 int64_t begin, int64_t end, const AdamWStepScalars& s) {
  // g ← g·grad_scale (one fp32 multiply, as a separate g.mul_ would round it);
  // p ← p·(1 − lr·wd);  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;
  // p ← p − (lr / bc1) · m / (sqrt(v) / sqrt(bc2) + ε)        (torch.optim.AdamW)
  const float decay = 1 - s.lr * s.weight_decay, step_size = s.lr / s.bias_correction1;
  const float inv_sqrt_bc2 = 1 / std::sqrt(s.bias_correction2);
  const float beta1 = s.beta1, beta2 = s.beta2, eps = s.eps;
  const float one_minus_b1 = 1 - beta1, one_minus_b2 = 1 - beta2, grad_scale = s.grad_scale;
  for (int64_t i = begin; i < end; ++i) {
    const float gi = g[i] * grad_scale;
    const float mi = beta1 * m[i] + one_minus_b1 * gi;
    const float vi = beta2 * v[i] + one_minus_b2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * decay - step_size * mi / (std::sqrt(vi) * inv_sqrt_bc2 + eps);
  }
}

}  // namespace paratorch::optim
