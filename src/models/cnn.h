// src/models/cnn.h — the `cnn` model: a small ResNet for 28x28 grey images
// (Fashion-MNIST).
//
//   stem conv3x3(1 -> C) -> stage 1 (C, 28x28) -> stride-2 conv -> stage 2
//   (2C, 14x14) -> stride-2 conv -> stage 3 (4C, 7x7) -> global average pool
//   -> Linear(4C -> n_classes);   C = d_model, n_layers residual blocks in all.
// Each block is x + conv(act(norm(conv(act(norm(x)))))) (pre-activation ResNet,
// He et al. 2016). Normalization is GroupNorm, not BatchNorm, on purpose:
// BatchNorm's statistics depend on which samples share a rank's batch, so a
// data-parallel run could not reproduce the single-process run; GroupNorm
// normalizes each sample by itself.
#pragma once
#include "models/model.h"

namespace paratorch::models {

class ResidualBlockImpl : public torch::nn::Module {
 public:
  explicit ResidualBlockImpl(int channels);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::GroupNorm norm1{nullptr}, norm2{nullptr};
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
};
TORCH_MODULE(ResidualBlock);

class Cnn : public BundledModel {
 public:
  explicit Cnn(const ModelConfig& config);
  /// input: float [B, 1, 28, 28] -> logits [B, n_classes]
  torch::Tensor forward(const torch::Tensor& input) override;
  torch::Tensor loss(const Batch& batch) override;
  InitSpec init_spec(const std::string& name, const torch::Tensor& param) const override;
  std::vector<ModelBlock> blocks() override;

 private:
  torch::nn::Conv2d stem{nullptr}, down1{nullptr}, down2{nullptr};
  torch::nn::ModuleList stage1, stage2, stage3;
  torch::nn::GroupNorm norm_f{nullptr};
  torch::nn::Linear head{nullptr};
};

struct ModelFamily;
/// The `cnn` family (registry.h): 28x28 images, judged by accuracy.
const ModelFamily& cnn_family();

}  // namespace paratorch::models
