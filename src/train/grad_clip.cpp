// src/train/grad_clip.cpp — see grad_clip.h.
#include "train/grad_clip.h"

#include <cmath>

namespace paratorch::train {

double clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm,
                      const SumAcross& sum_squares_across) {
  torch::NoGradGuard no_grad;
  double squares = 0;
  for (const auto& p : params)
    if (p.grad().defined()) squares += p.grad().pow(2).sum().item<double>();
  if (sum_squares_across) squares = sum_squares_across(squares);
  const double norm = std::sqrt(squares);
  if (max_norm > 0 && norm > max_norm) {
    const double scale = max_norm / (norm + 1e-6);
    for (const auto& p : params)
      if (p.grad().defined()) const_cast<torch::Tensor&>(p.grad()).mul_(scale);
  }
  return norm;
}

}  // namespace paratorch::train
