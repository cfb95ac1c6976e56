// src/optim/mixed_precision_optimizer.h — an optimizer over fp32 master
// weights that may skip a step and then refreshes the low-precision model.
//
// Wraps any Optimizer built over mixed_precision::MasterWeights' masters. Before each
// update it asks `may_step` (the fp16 loss scaler's verdict, agreed by every
// rank: an inf/NaN gradient anywhere skips the step for all); after an
// update `after_step` rounds the masters into the model. State passes
// through unchanged, so checkpoints hold the same fp32 state as an fp32 run.
//
//   auto opt = std::make_unique<MixedPrecisionOptimizer>(make_optimizer(o, masters.tensors()),
//       [&] { return scaler_allows(); }, [&] { masters.copy_to_model(); });
#pragma once
#include "optim/optimizer.h"

#include <functional>
#include <memory>

namespace paratorch::optim {

class MixedPrecisionOptimizer final : public Optimizer {
 public:
  MixedPrecisionOptimizer(std::unique_ptr<Optimizer> inner, std::function<bool()> may_step,
                          std::function<void()> after_step);

  void step(double lr, double grad_scale = 1.0) override;
  std::map<std::string, torch::Tensor> state_tensors() const override { return inner_->state_tensors(); }
  std::vector<LocalState> local_state() const override { return inner_->local_state(); }
  void load_state_tensors(const std::map<std::string, torch::Tensor>& state) override;

 private:
  std::unique_ptr<Optimizer> inner_;
  std::function<bool()> may_step_;
  std::function<void()> after_step_;
};

}  // namespace paratorch::optim
