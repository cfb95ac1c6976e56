// src/train/grad_clip.h — gradient clipping by global L2 norm.
//
// norm = sqrt(sum over parameters of ||g||^2); when norm > max_norm every
// gradient is scaled by max_norm / (norm + 1e-6) (as torch.nn.utils.
// clip_grad_norm_). Layouts that shard parameters pass `sum_squares_across`
// to add the other shards' squares (tensor/pipeline groups), so the norm is
// the norm of the whole model's gradient in every layout.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <vector>

namespace paratorch::train {

using SumAcross = std::function<double(double)>;

/// Returns the global norm before clipping. max_norm <= 0 only measures.
double clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm,
                      const SumAcross& sum_squares_across = nullptr);

}  // namespace paratorch::train
