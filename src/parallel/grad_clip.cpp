// src/parallel/grad_clip.cpp — see grad_clip.h.
#include "parallel/grad_clip.h"

#include "parallel/grad_norm.h"

#include <cmath>

namespace paratorch::parallel {

double global_grad_norm(const std::vector<torch::Tensor>& params, const SumAcross& sum_squares_across) {
  double squares = parallel::local_grad_sum_of_squares(params);
  if (sum_squares_across) squares = sum_squares_across(squares);
  return std::sqrt(squares);
}

double clip_coefficient(double norm, double max_norm) {
  return max_norm > 0 && norm > max_norm ? max_norm / (norm + 1e-6) : 1.0;
}

double clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm,
                      const SumAcross& sum_squares_across) {
  torch::NoGradGuard no_grad;
  const double norm = global_grad_norm(params, sum_squares_across);
  const double scale = clip_coefficient(norm, max_norm);
  if (scale != 1.0)
    for (const auto& p : params)
      if (p.grad().defined()) const_cast<torch::Tensor&>(p.grad()).mul_(scale);
  return norm;
}

}  // namespace paratorch::parallel
