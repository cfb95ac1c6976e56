// src/models/model.cpp — what every bundled model shares (blocks, the
// default criterion, layout-independent initialization), config validation
// and the model factory, both through the registry (registry.h).
#include "models/model.h"

#include "models/registry.h"
#include <paratorch/errors.h>
#include <paratorch/tensor_parallel.h>

namespace paratorch::models {

void ModelConfig::validate() const {
  const ModelFamily& family = model_family(name);  // UsageError naming the registered models
  require_model_size("n_layers", n_layers);
  require_model_size("d_model", d_model);
  if (family.validate) family.validate(*this);
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
  const ModelFamily& family = model_family(config.name);
  if (family.check_tensor_parallel) return family.check_tensor_parallel(config, tp, sequence_parallel);
  const auto with_tp = model_family_names([](const ModelFamily& f) { return bool(f.check_tensor_parallel); });
  std::string list;
  for (size_t i = 0; i < with_tp.size(); ++i)
    list += (i == 0 ? "" : i + 1 == with_tp.size() ? " and " : ", ") + with_tp[i];
  throw UsageError("paratorch: Layout::tp = " + std::to_string(tp) + " needs a model with tensor-parallel "
                   "layers; model '" + config.name + "' has none (tp > 1 works with " + list + "); set tp = 1");
}

std::shared_ptr<BundledModel> make_model(const ModelConfig& config, const tensor_parallel::TensorParallelContext& tp) {
  check_tensor_parallel(config, tp.size(), tp.sp());
  return model_family(config.name).make(config, tp);
}

Batch Batch::to(torch::Device device, torch::ScalarType compute) const {
  Batch b{input.to(device), target.to(device)};
  if (b.input.is_floating_point()) b.input = b.input.to(compute);
  return b;
}

}  // namespace paratorch::models
