// src/optim/mixed_precision_optimizer.cpp — see mixed_precision_optimizer.h.
#include "optim/mixed_precision_optimizer.h"

namespace paratorch::optim {

MixedPrecisionOptimizer::MixedPrecisionOptimizer(std::unique_ptr<Optimizer> inner, std::function<bool()> may_step,
                                                 std::function<void()> after_step)
    : inner_(std::move(inner)), may_step_(std::move(may_step)), after_step_(std::move(after_step)) {
  steps_ = inner_->steps_taken();
}

void MixedPrecisionOptimizer::step(double lr, double grad_scale) {
  if (may_step_ && !may_step_()) return;  // skipped: parameters, state and step count unchanged
  inner_->step(lr, grad_scale);
  steps_ = inner_->steps_taken();
  if (after_step_) after_step_();
}

void MixedPrecisionOptimizer::load_state_tensors(const std::map<std::string, torch::Tensor>& state) {
  inner_->load_state_tensors(state);
  steps_ = inner_->steps_taken();
}

}  // namespace paratorch::optim
