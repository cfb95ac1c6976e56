// src/parallel/grad_clip.h — gradient clipping by global L2 norm.
//
// norm = sqrt(sum over parameters of ||g||^2); when norm > max_norm every
// gradient is scaled by max_norm / (norm + 1e-6) (as torch.nn.utils.
// clip_grad_norm_). Layouts that shard parameters pass `sum_squares_across`
// to add the other shards' squares (tensor/pipeline groups), so the norm is
// the norm of the whole model's gradient in every layout.
//
// The training step does not rescale the gradients itself: it hands the
// coefficient to the optimizer (Optimizer::step's grad_scale), which folds
// it into the pass over the gradients it makes anyway — the rescale would
// be one more read and write of every gradient (Megatron-LM and apex fold
// the clip into their fused optimizers the same way).
#pragma once
#include "parallel/grad_norm.h"

#include <torch/torch.h>

#include <functional>
#include <vector>

namespace paratorch::parallel {

using SumAcross = std::function<double(double)>;

/// The global L2 norm of the gradients of `params` (and of the other
/// shards', through `sum_squares_across`).
double global_grad_norm(const std::vector<torch::Tensor>& params, const SumAcross& sum_squares_across = nullptr);

/// What clipping multiplies the gradients by: max_norm / (norm + 1e-6) when
/// max_norm > 0 and norm > max_norm, else 1.
double clip_coefficient(double norm, double max_norm);

/// Measures the global norm and scales the gradients in place by
/// clip_coefficient. Returns the norm before clipping. max_norm <= 0 only measures.
double clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm,
                      const SumAcross& sum_squares_across = nullptr);

/// The public clip (paratorch/grad_clip.h, Pipeline::clip_grad_norm): the
/// norm of `entries` across `groups` (grad_norm.h's counting rules), and
/// every entry's gradient, tied copies included, scaled by clip_coefficient.
/// Returns the norm before clipping. UsageError unless max_norm > 0.
double clip_norm_entries(const std::vector<NormEntry>& entries, double max_norm, const NormGroups& groups);

}  // namespace paratorch::parallel
