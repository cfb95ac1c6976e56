// src/models/mlp.cpp — see mlp.h.
#include "models/mlp.h"

#include "ops/ops.h"
#include "models/registry.h"

#include <cmath>

namespace paratorch::models {

MlpBlockImpl::MlpBlockImpl(int d) {
  ln = register_module("ln", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d})));
  fc1 = register_module("fc1", torch::nn::Linear(d, 4 * d));
  fc2 = register_module("fc2", torch::nn::Linear(4 * d, d));
}

torch::Tensor MlpBlockImpl::forward(const torch::Tensor& x) {
  return x + ops::linear(fc2, ops::gelu(ops::linear(fc1, ops::layer_norm(ln, x))));
}

Mlp::Mlp(const ModelConfig& c) {
  inp = register_module("inp", torch::nn::Linear(c.d_in, c.d_model));
  layers = register_module("blocks", torch::nn::ModuleList());
  for (int i = 0; i < c.n_layers; ++i) layers->push_back(MlpBlock(c.d_model));
  ln_f = register_module("ln_f", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.d_model})));
  head = register_module("head", torch::nn::Linear(c.d_model, c.n_classes));
}

torch::Tensor Mlp::forward(const torch::Tensor& input) {
  auto x = ops::linear(inp, input);
  for (const auto& block : *layers) x = block->as<MlpBlock>()->forward(x);
  return ops::linear(head, ops::layer_norm(ln_f, x));
}

// inp, blocks.0 .. blocks.{L-1}, head (ln_f + the classifier).
std::vector<ModelBlock> Mlp::blocks() {
  std::vector<ModelBlock> out;
  out.push_back(make_block("inp", {"inp."}, [this](const torch::Tensor& x) { return ops::linear(inp, x); }));
  for (size_t i = 0; i < layers->size(); ++i) {
    auto block = layers[i]->as<MlpBlock>();
    const std::string name = "blocks." + std::to_string(i);
    out.push_back(make_block(name, {name + "."}, [block](const torch::Tensor& x) { return block->forward(x); }));
  }
  out.push_back(make_block("head", {"ln_f.", "head."}, [this](const torch::Tensor& x) { return ops::linear(head, ops::layer_norm(ln_f, x)); }));
  return out;
}

torch::Tensor Mlp::loss(const Batch& batch) {
  return torch::cross_entropy_loss(forward(batch.input), batch.target);
}

InitSpec Mlp::init_spec(const std::string& name, const torch::Tensor& p) const {
  bool is_weight = name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0;
  bool layer_norm = name.find("ln") != std::string::npos;
  if (layer_norm) return InitSpec::constant(is_weight ? 1.0 : 0.0);
  if (!is_weight) return InitSpec::constant(0.0);  // biases start at zero
  // Linear weights as PyTorch's kaiming-uniform default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
  double bound = 1.0 / std::sqrt(static_cast<double>(p.size(1)));
  return InitSpec::uniform(-bound, bound);
}


namespace {

ModelFamily make_mlp_family() {
  ModelFamily f;
  f.name = "mlp";
  f.input = ModelInput::kFeatures;
  f.metric_key = "val_accuracy";
  f.verify_source = "synthetic";
  f.metric = accuracy_metric;
  f.validate = [](const ModelConfig& c) {
    require_model_size("d_in", c.d_in);
    require_model_size("n_classes", c.n_classes);
  };
  f.make = [](const ModelConfig& c, const tensor_parallel::TensorParallelContext&) { return std::make_shared<Mlp>(c); };
  f.activation_bytes = dense_activation_bytes;
  f.small_sizes = [](ModelConfig& c) { c.n_layers = 2; c.d_model = 64; c.d_in = 32; c.n_classes = 10; };
  return f;
}

}  // namespace

const ModelFamily& mlp_family() {
  static const ModelFamily family = make_mlp_family();
  return family;
}

}  // namespace paratorch::models
