// src/models/cnn.cpp — see cnn.h.
#include "models/cnn.h"

#include "models/registry.h"

#include <cmath>

namespace paratorch::models {
namespace {

torch::nn::Conv2d conv3x3(int in, int out, int stride) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).stride(stride).padding(1));
}

torch::nn::GroupNorm group_norm(int channels) {
  return torch::nn::GroupNorm(torch::nn::GroupNormOptions(std::min(8, channels), channels));
}

}  // namespace

ResidualBlockImpl::ResidualBlockImpl(int c) {
  norm1 = register_module("norm1", group_norm(c));
  conv1 = register_module("conv1", conv3x3(c, c, 1));
  norm2 = register_module("norm2", group_norm(c));
  conv2 = register_module("conv2", conv3x3(c, c, 1));
}

torch::Tensor ResidualBlockImpl::forward(const torch::Tensor& x) {
  return x + conv2(torch::relu(norm2(conv1(torch::relu(norm1(x))))));
}

Cnn::Cnn(const ModelConfig& c) {
  const int C = c.d_model;
  stem = register_module("stem", conv3x3(1, C, 1));
  stage1 = register_module("stage1", torch::nn::ModuleList());
  down1 = register_module("down1", conv3x3(C, 2 * C, 2));
  stage2 = register_module("stage2", torch::nn::ModuleList());
  down2 = register_module("down2", conv3x3(2 * C, 4 * C, 2));
  stage3 = register_module("stage3", torch::nn::ModuleList());
  // n_layers blocks spread over the three stages, earlier stages first.
  for (int b = 0; b < c.n_layers; ++b) {
    if (b % 3 == 0) stage1->push_back(ResidualBlock(C));
    else if (b % 3 == 1) stage2->push_back(ResidualBlock(2 * C));
    else stage3->push_back(ResidualBlock(4 * C));
  }
  norm_f = register_module("norm_f", group_norm(4 * C));
  head = register_module("head", torch::nn::Linear(4 * C, c.n_classes));
}

torch::Tensor Cnn::forward(const torch::Tensor& input) {
  auto x = stem(input);
  for (const auto& b : *stage1) x = b->as<ResidualBlock>()->forward(x);
  x = down1(x);
  for (const auto& b : *stage2) x = b->as<ResidualBlock>()->forward(x);
  x = down2(x);
  for (const auto& b : *stage3) x = b->as<ResidualBlock>()->forward(x);
  x = torch::relu(norm_f(x)).mean({2, 3});
  return head(x);
}

// stem, stage1.*, down1, stage2.*, down2, stage3.*, head: forward's order.
std::vector<ModelBlock> Cnn::blocks() {
  std::vector<ModelBlock> out;
  auto conv_block = [this](const std::string& name, torch::nn::Conv2d conv) {
    return make_block(name, {name + "."}, [conv](const torch::Tensor& x) mutable { return conv->forward(x); });
  };
  auto stage_blocks = [&](const std::string& stage, torch::nn::ModuleList& list) {
    for (size_t i = 0; i < list->size(); ++i) {
      auto block = list[i]->as<ResidualBlock>();
      const std::string name = stage + "." + std::to_string(i);
      out.push_back(make_block(name, {name + "."}, [block](const torch::Tensor& x) { return block->forward(x); }));
    }
  };
  out.push_back(conv_block("stem", stem));
  stage_blocks("stage1", stage1);
  out.push_back(conv_block("down1", down1));
  stage_blocks("stage2", stage2);
  out.push_back(conv_block("down2", down2));
  stage_blocks("stage3", stage3);
  out.push_back(make_block("head", {"norm_f.", "head."},
                           [this](const torch::Tensor& x) { return head(torch::relu(norm_f(x)).mean({2, 3})); }));
  return out;
}

torch::Tensor Cnn::loss(const Batch& batch) {
  return torch::cross_entropy_loss(forward(batch.input), batch.target);
}

InitSpec Cnn::init_spec(const std::string& name, const torch::Tensor& p) const {
  bool is_weight = name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0;
  if (name.find("norm") != std::string::npos) return InitSpec::constant(is_weight ? 1.0 : 0.0);
  if (!is_weight) return InitSpec::constant(0.0);
  // He initialization for ReLU networks: N(0, sqrt(2 / fan_in)).
  double fan_in = static_cast<double>(p.numel() / p.size(0));
  if (name.rfind("head.", 0) == 0) return InitSpec::uniform(-1.0 / std::sqrt(fan_in), 1.0 / std::sqrt(fan_in));
  return InitSpec::normal(0.0, std::sqrt(2.0 / fan_in));
}


namespace {

ModelFamily make_cnn_family() {
  ModelFamily f;
  f.name = "cnn";
  f.input = ModelInput::kImages;
  f.metric_key = "val_accuracy";
  f.metric = accuracy_metric;
  f.validate = [](const ModelConfig& c) { require_model_size("n_classes", c.n_classes); };
  f.make = [](const ModelConfig& c, const tensor_parallel::TensorParallelContext&) { return std::make_shared<Cnn>(c); };
  f.activation_bytes = dense_activation_bytes;
  // verify offers no cnn (its only data is fashion_mnist); the tests' small sizes.
  f.small_sizes = [](ModelConfig& c) { c.n_layers = 2; c.d_model = 64; c.d_in = 32; c.n_classes = 10; };
  return f;
}

}  // namespace

const ModelFamily& cnn_family() {
  static const ModelFamily family = make_cnn_family();
  return family;
}

}  // namespace paratorch::models
