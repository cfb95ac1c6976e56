// src/models/mf.h — the `mf` model: matrix-factorization recommender.
//
//   rating(u, i) = <P_u, Q_i> + b_u + c_i + mu,   loss = MSE
// with user factors P (n_users x n_factors), item factors Q, user and item
// biases b, c and a global bias mu. Input: int64 [B, 2] of (user, item);
// target: float [B] ratings.
//
// Tensor parallelism shards the four tables by rows over the tp group: rank r
// owns a contiguous range of user ids and of item ids. Every rank of the
// group sees the same batch; each looks up the ids it owns (zeros for the
// others) and one all-reduce returns every lookup to every rank — the owner
// "answers" for its rows — so gradients land only in owned rows and a table
// larger than one rank's memory trains.
#pragma once
#include "models/model.h"
#include "tensor_parallel/layers.h"

namespace paratorch::models {

class MatrixFactorization : public BundledModel {
 public:
  /// UsageError when tp does not divide n_users or n_items.
  explicit MatrixFactorization(const ModelConfig& config, const tensor_parallel::TensorParallelContext& tp = {});
  /// The constructor's tp checks, without a tp group (before MPI starts).
  static void check_tensor_parallel(const ModelConfig& config, int tp);
  torch::Tensor forward(const torch::Tensor& input) override;
  torch::Tensor loss(const Batch& batch) override;
  torch::Tensor criterion(const torch::Tensor& output, const Batch& batch) override;
  InitSpec init_spec(const std::string& name, const torch::Tensor& param) const override;
  std::vector<ModelBlock> blocks() override;

 private:
  ModelConfig config_;
  tensor_parallel::TensorParallelContext tp_;
  tensor_parallel::VocabParallelEmbedding user_factors{nullptr}, item_factors{nullptr}, user_bias{nullptr},
      item_bias{nullptr};
  torch::Tensor global_bias;
};

struct ModelFamily;
/// The `mf` family (registry.h): (user, item) ratings, judged by RMSE.
const ModelFamily& mf_family();

}  // namespace paratorch::models
