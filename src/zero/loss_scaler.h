// src/zero/loss_scaler.h — dynamic loss scaling for fp16 training.
//
// fp16 has 5 exponent bits: gradients below ~6e-8 flush to zero. Multiplying
// the loss by a scale S shifts gradients into range; they are divided by S
// before the update (Micikevicius et al., 2018, "Mixed Precision Training").
// Dynamic scaling (as torch.cuda.amp.GradScaler): when any gradient is inf or
// NaN the step is skipped and S halves; after `growth_interval` clean steps
// in a row S doubles.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>

namespace paratorch::zero {

struct LossScalerOptions {
  double initial_scale = 65536.0;  // 2^16, GradScaler's default
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int growth_interval = 2000;
  /// Throws UsageError naming the bad field.
  void validate() const;
};

class LossScaler {
 public:
  explicit LossScaler(LossScalerOptions options = {});
  double scale() const { return scale_; }
  /// After a backward: returns whether the optimizer may step (no inf/NaN),
  /// and moves the scale.
  bool update(bool found_non_finite);
  int64_t skipped_steps() const { return skipped_; }
  /// metrics.jsonl's "loss_scale" and "skipped_steps".
  std::map<std::string, double> metrics() const;
  /// The scaler's state for a checkpoint ("loss_scaler.scale", ".clean_steps",
  /// ".skipped_steps": what GradScaler's state_dict holds), and back. A map
  /// without those keys (an fp32 run's checkpoint) leaves the scaler as it is.
  std::map<std::string, torch::Tensor> state() const;
  void load_state(const std::map<std::string, torch::Tensor>& state);

 private:
  LossScalerOptions options_;
  double scale_;
  int clean_ = 0;
  int64_t skipped_ = 0;
};

}  // namespace paratorch::zero
