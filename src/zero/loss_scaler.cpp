// src/zero/loss_scaler.cpp — see loss_scaler.h.
#include "zero/loss_scaler.h"

#include <paratorch/errors.h>

#include <string>

namespace paratorch::zero {

void LossScalerOptions::validate() const {
  if (!(initial_scale > 0)) throw UsageError("paratorch: loss scaler initial_scale must be > 0");
  if (!(growth_factor > 1)) throw UsageError("paratorch: loss scaler growth_factor must be > 1");
  if (!(backoff_factor > 0 && backoff_factor < 1))
    throw UsageError("paratorch: loss scaler backoff_factor must be in (0, 1)");
  if (growth_interval < 1) throw UsageError("paratorch: loss scaler growth_interval must be >= 1");
}

LossScaler::LossScaler(LossScalerOptions options) : options_(options), scale_(options.initial_scale) {
  options_.validate();
}

bool LossScaler::update(bool found_non_finite) {
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
  if (auto it = state.find("loss_scaler.clean_steps"); it != state.end()) clean_ = static_cast<int>(it->second.item<int64_t>());
  if (auto it = state.find("loss_scaler.skipped_steps"); it != state.end()) skipped_ = it->second.item<int64_t>();
}

}  // namespace paratorch::zero
