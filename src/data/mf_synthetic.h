// src/data/mf_synthetic.h — synthetic ratings with a known low-rank truth.
//
//   rating(u, i) = <P*_u, Q*_i> + b*_u + c*_i + 3.5 + noise,  noise ~ N(0, 0.1^2)
// with P*, Q* ~ N(0, 1/n_factors) and biases ~ N(0, 0.3^2), all drawn from
// the seed. Sample id picks a (user, item) pair and its noise by hash, so the
// best possible validation RMSE is the noise level, 0.1.
#pragma once
#include "data/dataset.h"

namespace paratorch::data {

class MfSynthetic : public Dataset {
 public:
  static constexpr double kNoiseStd = 0.1;
  MfSynthetic(const models::ModelConfig& model, uint64_t seed);
  models::Batch train_batch(const std::vector<int64_t>& ids) const override;
  models::Batch validation_batch(const std::vector<int64_t>& ids) const override;
  std::string describe() const override;
  double baseline_loss() const override { return kNoiseStd * kNoiseStd; }  // the best MSE
  /// The noiseless rating of (user, item) under the ground truth.
  double true_rating(int64_t user, int64_t item) const;

 private:
  models::Batch ratings(const std::vector<int64_t>& ids, int64_t offset) const;
  int64_t n_users_, n_items_;
  uint64_t seed_;
  torch::Tensor users_, items_, user_bias_, item_bias_;
};

}  // namespace paratorch::data
