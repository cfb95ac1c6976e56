// src/parallel/mixed_precision/mixed_precision.h — mixed precision as one
// component that an engine keeping whole parameters composes (the
// data-parallel and pipeline engines; ZeRO keeps its masters in its shards).
//
// Mixed precision (Micikevicius et al., 2018): the model computes in bf16 or
// fp16, the optimizer updates fp32 masters (MasterWeights), and fp16 scales
// the loss by S so small gradients survive (LossScaler, GradScaler's
// semantics). One step, as an engine drives it:
//   backward of loss · loss_scale()           (low-precision gradients)
//   the engine's reduction                    (in fp32 where the reducer keeps
//                                              main gradients: use_gradients)
//   finish_gradients()                        masters' .grad = fp32 gradient / S
//   clipping, then the wrap()ped optimizer:   may_step()'s verdict, agreed over
//                                              the engine's groups, skips a step
//                                              with inf/NaN; after an update the
//                                              masters are rounded into the model.
// With compute_dtype = kFloat the component is off: trained() is the model's
// parameter, the scale is 1 and wrap() returns the optimizer unchanged.
#pragma once
#include "optim/optimizer.h"
#include "parallel/mixed_precision/master_weights.h"
#include <paratorch/communicator.h>
#include <paratorch/mixed_precision.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace paratorch::mixed_precision {

struct MixedPrecisionOptions {
  /// kFloat (off), kBFloat16 or kHalf.
  torch::ScalarType compute_dtype = torch::kFloat;
  /// Dynamic loss scaling (fp16 needs it; available to any precision for tests).
  bool loss_scaling = false;
  LossScalerOptions scaler;
};

class MixedPrecision {
 public:
  /// Casts `model_params` to options.compute_dtype, keeping fp32 masters (not at kFloat).
  MixedPrecision(MasterWeights::Named model_params, MixedPrecisionOptions options);

  bool enabled() const { return masters_ != nullptr; }
  torch::ScalarType compute_dtype() const { return options_.compute_dtype; }
  /// What the optimizer trains for the model's parameter `param` named
  /// `name`: its fp32 master, or `param` itself when it has none.
  torch::Tensor trained(const std::string& name, const torch::Tensor& param) const;
  /// The reducer's fp32 main gradients, by parameter name (MasterWeights::use_gradients).
  void use_gradients(std::map<std::string, torch::Tensor> fp32_gradients);
  /// S, the factor on the loss before backward (1 without loss scaling).
  double loss_scale() const { return options_.loss_scaling ? scaler_.scale() : 1.0; }
  /// After the reduction: every master's .grad holds its fp32 gradient / S.
  void finish_gradients();
  /// The scaler's verdict for this step, the same on every rank of `groups`
  /// (a non-finite gradient anywhere skips the step everywhere); moves S.
  bool may_step(const std::vector<Communicator*>& groups);
  /// `inner`, built over the trained() tensors, made to ask `may_step` before
  /// each update and to round the masters into the model after it.
  std::unique_ptr<optim::Optimizer> wrap(std::unique_ptr<optim::Optimizer> inner, std::function<bool()> may_step);
  /// The model's parameters = the masters rounded (after loading masters).
  void copy_to_model();

  /// The scaler's numbers for metrics.jsonl and its checkpointed state (empty without loss scaling).
  std::map<std::string, double> metrics() const;
  std::map<std::string, torch::Tensor> state() const;
  void load_state(const std::map<std::string, torch::Tensor>& state);
  double scale() const { return scaler_.scale(); }
  int64_t skipped_steps() const { return scaler_.skipped_steps(); }
  /// ", bf16 compute, fp32 masters" for an engine's start-up line ("" when off).
  std::string describe() const;

 private:
  MixedPrecisionOptions options_;
  std::unique_ptr<MasterWeights> masters_;
  LossScaler scaler_;
};

}  // namespace paratorch::mixed_precision
