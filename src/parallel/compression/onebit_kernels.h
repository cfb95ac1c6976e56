// src/parallel/compression/onebit_kernels.h — the element loops of 1-bit
// Adam and its all-reduce (onebit_adam.cpp, sign_allreduce.h), one pass each
// instead of a chain of tensor operations. Signs go 8 to a byte, bit k of
// byte i for element 8i + k, set when the value is >= 0.
#pragma once
#include <cstdint>

namespace paratorch::compression {

/// b[i] += x[i] for i < nx; returns mean |b| over [0, n) (fp64 sum).
double add_and_mean_abs(float* b, const float* x, int64_t nx, int64_t n);
/// packed ← signs of b (n a multiple of 8); b ← b - scale·sign(b) (the error).
void pack_signs_keep_error(float* b, int64_t n, float scale, uint8_t* packed);
/// out[i] (+)= scale·sign_i for the n values in `packed`.
void scaled_signs(const uint8_t* packed, int64_t n, float scale, float* out, bool accumulate);
/// m = beta·m + c·g.
void momentum_update(float* m, const float* g, int64_t n, float beta, float c);
/// p = p·decay - step·m / denom (Adam's update with a frozen denominator).
void frozen_adam_update(float* p, const float* m, const float* denom, int64_t n, float decay, float step);

}  // namespace paratorch::compression
