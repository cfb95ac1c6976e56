// src/models/mf.cpp — see mf.h.
#include "models/mf.h"

#include "models/registry.h"
#include "tensor_parallel/mappings.h"
#include <paratorch/errors.h>

#include <cmath>

namespace paratorch::models {

namespace tpl = tensor_parallel;

void MatrixFactorization::check_tensor_parallel(const ModelConfig& c, int tp) {
  if (tp <= 1) return;
  tpl::require_divisible("ModelConfig::n_users (user table rows)", c.n_users, tp);
  tpl::require_divisible("ModelConfig::n_items (item table rows)", c.n_items, tp);
}

MatrixFactorization::MatrixFactorization(const ModelConfig& c, const tpl::TensorParallelContext& tp)
    : config_(c), tp_(tp) {
  check_tensor_parallel(c, tp.size());
  user_factors = register_module("user_factors", tpl::VocabParallelEmbedding(c.n_users, c.n_factors, tp));
  item_factors = register_module("item_factors", tpl::VocabParallelEmbedding(c.n_items, c.n_factors, tp));
  user_bias = register_module("user_bias", tpl::VocabParallelEmbedding(c.n_users, 1, tp));
  item_bias = register_module("item_bias", tpl::VocabParallelEmbedding(c.n_items, 1, tp));
  global_bias = register_parameter("global_bias", torch::zeros({1}));
}

torch::Tensor MatrixFactorization::forward(const torch::Tensor& input) {
  auto users = input.select(1, 0), items = input.select(1, 1);
  // The four owner lookups travel in one all-reduce: [P_u | Q_i | b_u | c_i].
  const int64_t F = config_.n_factors;
  auto looked_up = tpl::reduce_from_tp(
      torch::cat({user_factors->forward_partial(users), item_factors->forward_partial(items),
                  user_bias->forward_partial(users), item_bias->forward_partial(items)},
                 1),
      tp_);
  auto parts = looked_up.split_with_sizes({F, F, 1, 1}, 1);
  auto dot = (parts[0] * parts[1]).sum(1);
  return dot + parts[2].squeeze(1) + parts[3].squeeze(1) + global_bias;
}

// One block: the two lookups and the dot product do not split into a chain
// (tensor parallelism splits the tables themselves instead).
std::vector<ModelBlock> MatrixFactorization::blocks() {
  return {make_block("mf", {""}, [this](const torch::Tensor& x) { return forward(x); })};
}

torch::Tensor MatrixFactorization::loss(const Batch& batch) {
  return torch::mse_loss(forward(batch.input), batch.target);
}

torch::Tensor MatrixFactorization::criterion(const torch::Tensor& output, const Batch& batch) {
  return torch::mse_loss(output, batch.target);
}

InitSpec MatrixFactorization::init_spec(const std::string& name, const torch::Tensor&) const {
  if (name.find("factors") != std::string::npos)
    return InitSpec::normal(0.0, 1.0 / std::sqrt(static_cast<double>(config_.n_factors)));
  return InitSpec::constant(0.0);  // biases
}


namespace {

ModelFamily make_mf_family() {
  ModelFamily f;
  f.name = "mf";
  f.input = ModelInput::kPairs;
  f.loss_name = "MSE";
  f.metric_key = "val_rmse";
  f.verify_source = "mf_synthetic";
  f.metric = [](double loss, double) { return std::sqrt(loss); };
  f.validate = [](const ModelConfig& c) {
    require_model_size("n_users", c.n_users);
    require_model_size("n_items", c.n_items);
    require_model_size("n_factors", c.n_factors);
  };
  f.check_tensor_parallel = [](const ModelConfig& c, int tp, bool) {
    MatrixFactorization::check_tensor_parallel(c, tp);
  };
  f.make = [](const ModelConfig& c, const tpl::TensorParallelContext& tp) {
    return std::make_shared<MatrixFactorization>(c, tp);
  };
  f.activation_bytes = dense_activation_bytes;
  f.small_sizes = [](ModelConfig& c) { c.n_users = 64; c.n_items = 48; c.n_factors = 8; };
  return f;
}

}  // namespace

const ModelFamily& mf_family() {
  static const ModelFamily family = make_mf_family();
  return family;
}

}  // namespace paratorch::models
