// src/parallel/mixed_precision/master_weights.h — fp32 master copies of a model's low-precision
// parameters, for engines that keep whole (unsharded) parameters.
//
// Mixed-precision training (Micikevicius et al., 2018): the model computes
// in bf16/fp16 while the optimizer updates fp32 "master" weights, because
// an update lr·g is often below the 8- or 11-bit mantissa of the weight
// itself and would round away. Each step:
//   1. backward leaves low-precision gradients on the model's parameters;
//   2. widen_gradients(S) moves them into the masters' fp32 .grad, divided by
//      the loss scale S (fp16; 1 otherwise) — reductions, clipping and the
//      optimizer then see only fp32 tensors (the masters). Where a reducer
//      already accumulated them in fp32 (use_gradients), .grad is that tensor;
//   3. after the optimizer's update, copy_to_model() rounds the masters into
//      the model's parameters for the next forward.
// ZeroEngine keeps its masters inside its flat shards instead; the engines
// that keep whole parameters (data parallel, pipeline) use this through
// mixed_precision::MixedPrecision.
//
//   MasterWeights masters(model_params, torch::kBFloat16);  // model now bf16
//   ... backward ...;  masters.widen_gradients(1.0);  optimizer over masters.tensors() ...;
//   masters.copy_to_model();
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace paratorch::mixed_precision {

class MasterWeights {
 public:
  using Named = std::vector<std::pair<std::string, torch::Tensor>>;
  /// Clones the (fp32) `model_params` as masters and casts the model's
  /// parameters to `dtype` in place (set_data: the modules keep their tensors).
  MasterWeights(Named model_params, torch::ScalarType dtype);

  /// The fp32 masters, in the model's order, with the model's names.
  const Named& tensors() const { return masters_; }
  /// Master of parameter `name`; null when the name has none.
  const torch::Tensor* find(const std::string& name) const;
  /// The fp32 gradients of the named parameters live here (a reducer's main
  /// gradients, DDPOptions::main_grad_dtype): widen_gradients points those
  /// masters' .grad at them instead of copying the model's .grad.
  void use_gradients(std::map<std::string, torch::Tensor> fp32_gradients);
  /// Every master's .grad = its model parameter's gradient widened to fp32
  /// (or its use_gradients tensor, in place) and divided by `loss_scale`
  /// (zero where the model had none); the model's gradients are dropped.
  void widen_gradients(double loss_scale);
  /// Whether any master gradient holds an inf or NaN (this rank's only).
  bool has_non_finite_gradient() const;
  /// The model's parameters = the masters rounded to the compute dtype.
  void copy_to_model();

 private:
  Named model_, masters_;
  std::map<std::string, size_t> index_;  // name -> position in masters_
  std::vector<torch::Tensor> external_;  // per master: its use_gradients tensor, or undefined
};

}  // namespace paratorch::mixed_precision
