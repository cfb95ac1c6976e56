// src/optim/fused_adamw.h — one pass of AdamW over contiguous fp32 CPU memory.
//
// torch's AdamW is eight tensor operations per parameter (mul_, add_, mul_,
// addcmul_, sqrt, div, add_, addcdiv_), each a full pass over memory; on a
// CPU the optimizer step is memory-bound, and two data-parallel ranks on one
// socket share that bandwidth (measured on bench/ddp: 13 ms alone, 19 ms when
// both ranks step at once). This kernel reads p, g, m, v once and writes p,
// m, v once — the fusion of apex's FusedAdam / torch's fused=True, for CPUs.
// The arithmetic is the same formula in fp32, so results agree with torch's
// to rounding (tests/optim/optimizer_test.cpp).
#pragma once
#include <cstdint>

namespace paratorch::optim {

struct AdamWStepScalars {
  float lr = 0, weight_decay = 0, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
  float bias_correction1 = 1, bias_correction2 = 1;  // 1 - beta^t
  float grad_scale = 1;  // g is read as g·grad_scale (the clip coefficient)
};

/// Updates n elements in place: param, exp_avg, exp_avg_sq given grad.
/// Splits the range over torch's intra-op threads.
void fused_adamw_step(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, int64_t n,
                      const AdamWStepScalars& s);

/// The single-threaded loop over [begin, end) (fused_adamw_kernel.cpp).
void adamw_range(float* __restrict param, const float* __restrict grad, float* __restrict exp_avg,
                 float* __restrict exp_avg_sq, int64_t begin, int64_t end, const AdamWStepScalars& s);

}  // namespace paratorch::optim
