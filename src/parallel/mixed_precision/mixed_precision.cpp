// src/parallel/mixed_precision/mixed_precision.cpp — see mixed_precision.h.
#include "parallel/mixed_precision/mixed_precision.h"

#include "optim/mixed_precision_optimizer.h"
#include "parallel/mixed_precision/precision.h"

namespace paratorch::mixed_precision {

MixedPrecision::MixedPrecision(MasterWeights::Named model_params, MixedPrecisionOptions options)
    : options_(options), scaler_(options.scaler) {
  options_.scaler.validate();
  if (options_.compute_dtype != torch::kFloat)
    masters_ = std::make_unique<MasterWeights>(std::move(model_params), options_.compute_dtype);
}

torch::Tensor MixedPrecision::trained(const std::string& name, const torch::Tensor& param) const {
  if (masters_)
    if (const torch::Tensor* m = masters_->find(name)) return *m;
  return param;
}

void MixedPrecision::use_gradients(std::map<std::string, torch::Tensor> fp32_gradients) {
  if (masters_) masters_->use_gradients(std::move(fp32_gradients));
}

void MixedPrecision::finish_gradients() {
  if (masters_) masters_->widen_gradients(loss_scale());
}

bool MixedPrecision::may_step(const std::vector<Communicator*>& groups) {
  if (!options_.loss_scaling) return true;
  auto flag = torch::tensor({masters_ && masters_->has_non_finite_gradient() ? 1.0 : 0.0}, torch::kDouble);
  for (Communicator* group : groups)
    if (group) group->all_reduce(flag, ReduceOp::kMax);
  return scaler_.update(flag.item<double>() > 0);
}

std::unique_ptr<optim::Optimizer> MixedPrecision::wrap(std::unique_ptr<optim::Optimizer> inner,
                                                       std::function<bool()> may_step) {
  if (!masters_ && !options_.loss_scaling) return inner;
  return std::make_unique<optim::MixedPrecisionOptimizer>(std::move(inner), std::move(may_step), [this] {
    if (masters_) masters_->copy_to_model();
  });
}

void MixedPrecision::copy_to_model() {
  if (masters_) masters_->copy_to_model();
}

std::map<std::string, double> MixedPrecision::metrics() const {
  return options_.loss_scaling ? scaler_.metrics() : std::map<std::string, double>{};
}

std::map<std::string, torch::Tensor> MixedPrecision::state() const {
  return options_.loss_scaling ? scaler_.state() : std::map<std::string, torch::Tensor>{};
}

void MixedPrecision::load_state(const std::map<std::string, torch::Tensor>& state) {
  if (options_.loss_scaling) scaler_.load_state(state);
}

std::string MixedPrecision::describe() const {
  return masters_ ? ", " + mixed_precision::precision_name(options_.compute_dtype) + " compute, fp32 masters" : "";
}

}  // namespace paratorch::mixed_precision
