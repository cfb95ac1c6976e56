// src/parallel/mixed_precision/loss_scaler.cpp — the dynamic loss scaler
// (paratorch/mixed_precision.h): GradScaler's rules and state.
//
// Dynamic scaling (Micikevicius et al., 2018; torch.cuda.amp.GradScaler):
// when any gradient is inf or NaN the step is skipped and S shrinks by
// backoff_factor; after growth_interval clean steps in a row S grows by
// growth_factor. The engines call update(found) directly; users go through
// scale() / step() / update() as with GradScaler.
#include <paratorch/errors.h>
#include <paratorch/mixed_precision.h>

#include <string>

namespace paratorch {

void LossScalerOptions::validate() const {
  if (!(initial_scale > 0))
    throw UsageError("paratorch: LossScalerOptions::initial_scale = " + std::to_string(initial_scale) +
                     " must be > 0");
  if (!(growth_factor > 1))
    throw UsageError("paratorch: LossScalerOptions::growth_factor = " + std::to_string(growth_factor) +
                     " must be > 1");
  if (!(backoff_factor > 0 && backoff_factor < 1))
    throw UsageError("paratorch: LossScalerOptions::backoff_factor = " + std::to_string(backoff_factor) +
                     " must be in (0, 1)");
  if (growth_interval < 1)
    throw UsageError("paratorch: LossScalerOptions::growth_interval = " + std::to_string(growth_interval) +
                     " must be >= 1");
}

LossScaler::LossScaler(LossScalerOptions options) : options_(options), scale_(options.initial_scale) {
  options_.validate();
}

torch::Tensor LossScaler::scale(const torch::Tensor& loss) const { return loss * scale_; }

bool LossScaler::unscale(const std::vector<torch::Tensor>& params, Communicator* group) {
  torch::NoGradGuard no_grad;
  bool found = false;
  for (const auto& p : params) {
    const auto& g = p.grad();
    if (!g.defined()) continue;
    const_cast<torch::Tensor&>(g).div_(scale_);
    if (!found && !torch::isfinite(g).all().item<bool>()) found = true;
  }
  if (group != nullptr && group->size() > 1) {
    // Every rank must take the same decision, or the replicas diverge.
    auto flag = torch::tensor({found ? 1.0f : 0.0f});
    group->all_reduce(flag, ReduceOp::kMax);
    found = flag.item<float>() > 0;
  }
  unscaled_ = true;
  found_non_finite_ = found;
  return found;
}

bool LossScaler::step(torch::optim::Optimizer& optimizer, Communicator* group) {
  if (!unscaled_) {
    std::vector<torch::Tensor> params;
    for (const auto& g : optimizer.param_groups())
      params.insert(params.end(), g.params().begin(), g.params().end());
    unscale(params, group);
  }
  if (found_non_finite_) return false;
  optimizer.step();
  return true;
}

void LossScaler::update() {
  update(found_non_finite_);
}

bool LossScaler::update(bool found_non_finite) {
  unscaled_ = found_non_finite_ = false;
  if (found_non_finite) {
    scale_ *= options_.backoff_factor;
    clean_ = 0;
    ++skipped_;
    return false;
  }
  if (++clean_ >= options_.growth_interval) {
    scale_ *= options_.growth_factor;
    clean_ = 0;
  }
  return true;
}

std::map<std::string, double> LossScaler::metrics() const {
  return {{"loss_scale", scale_}, {"skipped_steps", static_cast<double>(skipped_)}};
}

std::map<std::string, torch::Tensor> LossScaler::state() const {
  return {{"loss_scaler.scale", torch::tensor(scale_, torch::kDouble)},
          {"loss_scaler.clean_steps", torch::tensor(static_cast<int64_t>(clean_), torch::kLong)},
          {"loss_scaler.skipped_steps", torch::tensor(skipped_, torch::kLong)}};
}

void LossScaler::load_state(const std::map<std::string, torch::Tensor>& state) {
  auto scale = state.find("loss_scaler.scale");
  if (scale == state.end()) return;
  if (!(scale->second.item<double>() > 0))
    throw RuntimeFailure("paratorch: checkpoint's loss_scaler.scale is not > 0");
  scale_ = scale->second.item<double>();
  if (auto it = state.find("loss_scaler.clean_steps"); it != state.end())
    clean_ = static_cast<int>(it->second.item<int64_t>());
  if (auto it = state.find("loss_scaler.skipped_steps"); it != state.end()) skipped_ = it->second.item<int64_t>();
}

}  // namespace paratorch
