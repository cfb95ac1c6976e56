// src/models/mf.h — the `mf` model: matrix-factorization recommender.
//
//   rating(u, i) = <P_u, Q_i> + b_u + c_i + mu,   loss = MSE
// with user factors P (n_users x n_factors), item factors Q, user and item
// biases b, c and a global bias mu. Input: int64 [B, 2] of (user, item);
// target: float [B] ratings. The embedding tables are what tensor
// parallelism later shards by rows.
#pragma once
#include "models/model.h"

namespace paratorch::models {

class MatrixFactorization : public BundledModel {
 public:
  explicit MatrixFactorization(const ModelConfig& config);
  torch::Tensor forward(const torch::Tensor& input) override;
  torch::Tensor loss(const Batch& batch) override;
  torch::Tensor criterion(const torch::Tensor& output, const Batch& batch) override;
  InitSpec init_spec(const std::string& name, const torch::Tensor& param) const override;
  std::vector<ModelBlock> blocks() override;

 private:
  ModelConfig config_;
  torch::nn::Embedding user_factors{nullptr}, item_factors{nullptr}, user_bias{nullptr}, item_bias{nullptr};
  torch::Tensor global_bias;
};

}  // namespace paratorch::models
