// src/parallel/zero/master_weights.cpp — see master_weights.h.
#include "parallel/zero/master_weights.h"

namespace paratorch::zero {

MasterWeights::MasterWeights(Named model_params, torch::ScalarType dtype) : model_(std::move(model_params)) {
  torch::NoGradGuard no_grad;
  for (auto& [name, p] : model_) {
    index_[name] = masters_.size();
    masters_.emplace_back(name, p.detach().to(torch::kFloat, /*non_blocking=*/false, /*copy=*/true).requires_grad_(true));
    p.set_data(p.detach().to(dtype));
  }
}

const torch::Tensor* MasterWeights::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &masters_[it->second].second;
}

void MasterWeights::widen_gradients(double loss_scale) {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < model_.size(); ++i) {
    auto& p = model_[i].second;
    auto& m = masters_[i].second;
    if (!m.grad().defined()) m.mutable_grad() = torch::zeros_like(m);
    if (p.grad().defined()) {
      m.mutable_grad().copy_(p.grad());  // widens
      if (loss_scale != 1.0) m.mutable_grad().div_(loss_scale);
    } else {
      m.mutable_grad().zero_();
    }
    p.mutable_grad() = torch::Tensor();
  }
}

bool MasterWeights::has_non_finite_gradient() const {
  for (const auto& [name, m] : masters_)
    if (m.grad().defined() && !torch::isfinite(m.grad()).all().item<bool>()) return true;
  return false;
}

void MasterWeights::copy_to_model() {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < model_.size(); ++i) model_[i].second.copy_(masters_[i].second);
}

}  // namespace paratorch::zero
