// src/parallel/mixed_precision/master_weights.cpp — see master_weights.h.
#include "parallel/mixed_precision/master_weights.h"

#include <paratorch/errors.h>

namespace paratorch::mixed_precision {

MasterWeights::MasterWeights(Named model_params, torch::ScalarType dtype) : model_(std::move(model_params)) {
  torch::NoGradGuard no_grad;
  for (auto& [name, p] : model_) {
    index_[name] = masters_.size();
    masters_.emplace_back(name,
                          p.detach().to(torch::kFloat, /*non_blocking=*/false, /*copy=*/true).requires_grad_(true));
    p.set_data(p.detach().to(dtype));
  }
}

const torch::Tensor* MasterWeights::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &masters_[it->second].second;
}

void MasterWeights::use_gradients(std::map<std::string, torch::Tensor> fp32_gradients) {
  external_.assign(masters_.size(), torch::Tensor());
  for (auto& [name, g] : fp32_gradients) {
    auto it = index_.find(name);
    if (it == index_.end() || !g.defined()) continue;
    const auto& m = masters_[it->second].second;
    if (g.scalar_type() != torch::kFloat || g.sizes() != m.sizes())
      throw UsageError("paratorch: MasterWeights::use_gradients: the gradient of '" + name +
                       "' must be an fp32 tensor of its parameter's shape");
    external_[it->second] = std::move(g);
  }
}

void MasterWeights::widen_gradients(double loss_scale) {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < model_.size(); ++i) {
    auto& p = model_[i].second;
    auto& m = masters_[i].second;
    if (i < external_.size() && external_[i].defined()) {  // accumulated and reduced in fp32 already
      m.mutable_grad() = external_[i];
      if (loss_scale != 1.0) m.mutable_grad().div_(loss_scale);
      p.mutable_grad() = torch::Tensor();
      continue;
    }
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

}  // namespace paratorch::mixed_precision
