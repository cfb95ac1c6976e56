// src/train/grad_norm.h — this rank's sum of squared gradients, in one pass.
//
// The global gradient norm (grad_clip.h) reads every gradient once per step;
// on a CPU that pass is memory-bound (35 MB for the 8.8M-parameter mlp), so
// it is written as one fused read: fp32 contiguous CPU gradients go through
// sum_of_squares_range in fixed chunks (the same chunks whatever the thread
// count, so the sum is reproducible), everything else through torch.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace paratorch::train {

/// Sum over `params` with a defined gradient of ||grad||^2 (this rank's tensors only).
double local_grad_sum_of_squares(const std::vector<torch::Tensor>& params);

/// sum x[i]^2 over [0, n), fp32 blocks added in fp64 (grad_norm_kernel.cpp).
double sum_of_squares_range(const float* x, int64_t n);

}  // namespace paratorch::train
