// src/models/mlp.h — the `mlp` model (docs/concepts.md):
//   Linear(d_in -> d), n_layers pre-LayerNorm residual blocks
//   x + Linear(4d -> d)(GELU(Linear(d -> 4d)(LN(x)))), final LayerNorm,
//   Linear(d -> n_classes), cross-entropy.
#pragma once
#include "models/model.h"

namespace paratorch::models {

class MlpBlockImpl : public torch::nn::Module {
 public:
  explicit MlpBlockImpl(int d_model);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::LayerNorm ln{nullptr};
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(MlpBlock);

class Mlp : public BundledModel {
 public:
  explicit Mlp(const ModelConfig& config);
  torch::Tensor forward(const torch::Tensor& input) override;
  torch::Tensor loss(const Batch& batch) override;
  InitSpec init_spec(const std::string& name, const torch::Tensor& param) const override;
  std::vector<ModelBlock> blocks() override;
  bool computes_through_ops() const override { return true; }

 private:
  torch::nn::Linear inp{nullptr}, head{nullptr};
  torch::nn::ModuleList layers;  // registered as "blocks"
  torch::nn::LayerNorm ln_f{nullptr};
};

struct ModelFamily;
/// The `mlp` family (registry.h): feature vectors, judged by accuracy.
const ModelFamily& mlp_family();

}  // namespace paratorch::models
