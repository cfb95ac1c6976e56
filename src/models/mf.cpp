// src/models/mf.cpp — see mf.h.
#include "models/mf.h"

#include <paratorch/errors.h>

#include <cmath>

namespace paratorch::models {

MatrixFactorization::MatrixFactorization(const ModelConfig& c) : config_(c) {
  user_factors = register_module("user_factors", torch::nn::Embedding(c.n_users, c.n_factors));
  item_factors = register_module("item_factors", torch::nn::Embedding(c.n_items, c.n_factors));
  user_bias = register_module("user_bias", torch::nn::Embedding(c.n_users, 1));
  item_bias = register_module("item_bias", torch::nn::Embedding(c.n_items, 1));
  global_bias = register_parameter("global_bias", torch::zeros({1}));
}

torch::Tensor MatrixFactorization::forward(const torch::Tensor& input) {
  auto users = input.select(1, 0), items = input.select(1, 1);
  auto dot = (user_factors(users) * item_factors(items)).sum(1);
  return dot + user_bias(users).squeeze(1) + item_bias(items).squeeze(1) + global_bias;
}

// One block: the two lookups and the dot product do not split into a chain
// (the sharded-embedding issue splits the tables themselves instead).
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

}  // namespace paratorch::models
