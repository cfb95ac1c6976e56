// src/models/model.cpp — config validation and the model factory.
#include "models/model.h"

#include "models/cnn.h"
#include "models/gpt.h"
#include "models/mf.h"
#include "models/mlp.h"
#include <paratorch/errors.h>
#include <paratorch/tensor_parallel.h>

namespace paratorch::models {
namespace {

void require_positive(const char* key, int value) {
  if (value < 1)
    throw UsageError(std::string("paratorch: [model] ") + key + " must be >= 1, got " +
                     std::to_string(value));
}

}  // namespace

const std::vector<std::string>& model_names() {
  static const std::vector<std::string> names = {"gpt", "mlp", "cnn", "mf"};
  return names;
}

void ModelConfig::validate() const {
  bool known = false;
  for (const auto& n : model_names()) known = known || n == name;
  if (!known) {
    std::string valid;
    for (const auto& n : model_names()) valid += (valid.empty() ? "" : ", ") + n;
    throw UsageError("paratorch: unknown model '" + name + "'; valid models: " + valid);
  }
  require_positive("n_layers", n_layers);
  require_positive("d_model", d_model);
  if (name == "gpt") {
    require_positive("n_heads", n_heads);
    require_positive("seq_len", seq_len);
    require_positive("vocab_size", vocab_size);
    if (d_model % n_heads != 0)
      throw UsageError("paratorch: [model] d_model = " + std::to_string(d_model) +
                       " must be divisible by n_heads = " + std::to_string(n_heads));
  } else if (name == "mlp") {
    require_positive("d_in", d_in);
    require_positive("n_classes", n_classes);
  } else if (name == "cnn") {
    require_positive("n_classes", n_classes);
  } else {
    require_positive("n_users", n_users);
    require_positive("n_items", n_items);
    require_positive("n_factors", n_factors);
  }
}

ModelBlock BundledModel::make_block(std::string name, const std::vector<std::string>& prefixes,
                                   std::function<torch::Tensor(const torch::Tensor&)> forward) const {
  ModelBlock block{std::move(name), {}, {}, std::move(forward)};
  for (const auto& item : named_parameters(true))
    for (const auto& prefix : prefixes)
      if (item.key().rfind(prefix, 0) == 0) {
        block.parameters.push_back(item.key());
        break;
      }
  return block;
}

torch::Tensor BundledModel::criterion(const torch::Tensor& output, const Batch& batch) {
  return torch::cross_entropy_loss(output.reshape({-1, output.size(-1)}), batch.target.reshape({-1}));
}

void BundledModel::initialize(uint64_t seed) {
  std::vector<std::string> names;
  for (const auto& item : named_parameters(true)) names.push_back(item.key());
  initialize(seed, names);
}

void BundledModel::initialize(uint64_t seed, const std::vector<std::string>& names) {
  torch::NoGradGuard no_grad;
  const auto specs = shard_specs();
  auto params = named_parameters(true);
  for (const auto& name : names) {
    auto& p = params[name];
    const auto& spec = specs.at(name);
    auto full = full_init(init_spec(name, p), spec.full_shape(p.sizes()), seed, name);
    p.copy_(spec.slice(full).to(p.options()));
  }
}

std::map<std::string, tensor_parallel::ShardSpec> BundledModel::shard_specs() const {
  auto out = tensor_parallel::shard_specs(*this);
  for (auto& [name, spec] : out) spec.partial_grad = spec.partial_grad || partial_grad(name);
  return out;
}

void check_tensor_parallel(const ModelConfig& config, int tp, bool sequence_parallel) {
  config.validate();
  if (tp <= 1) return;
  if (config.name == "gpt") return Gpt::check_tensor_parallel(config, tp, sequence_parallel);
  if (config.name == "mf") return MatrixFactorization::check_tensor_parallel(config, tp);
  throw UsageError("paratorch: [parallel] tp = " + std::to_string(tp) + " needs a model with tensor-parallel "
                   "layers; model '" + config.name + "' has none (tp > 1 works with gpt and mf); set tp = 1");
}

std::shared_ptr<BundledModel> make_model(const ModelConfig& config, const tensor_parallel::TensorParallelContext& tp) {
  check_tensor_parallel(config, tp.size(), tp.sp());
  if (config.name == "gpt") return std::make_shared<Gpt>(config, tp);
  if (config.name == "mf") return std::make_shared<MatrixFactorization>(config, tp);
  if (config.name == "cnn") return std::make_shared<Cnn>(config);
  return std::make_shared<Mlp>(config);
}

}  // namespace paratorch::models
