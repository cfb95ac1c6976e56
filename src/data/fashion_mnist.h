// src/data/fashion_mnist.h — Fashion-MNIST (Zalando's 28x28 grey clothing
// images, 10 classes) from Debian's dataset-fashion-mnist package.
//
// Training sample id i is train image hash(seed, i) mod 60000, so a global
// batch is the same set of images in every layout; validation sample id i is
// test image i mod 10000. Images come out as float [N, 1, 28, 28] for the cnn
// model, flattened to [N, 784] for mlp, normalized with Fashion-MNIST's
// mean and standard deviation; labels are int64 class indices 0..9.
#pragma once
#include "data/dataset.h"

namespace paratorch::data {

class FashionMnist : public Dataset {
 public:
  static constexpr const char* kDefaultDir = "/usr/share/datasets/fashion-mnist";
  static constexpr double kMean = 0.2860;  // of the training pixels, scaled to [0, 1]
  static constexpr double kStd = 0.3530;

  /// Loads the four gzipped IDX files from `dir` once. UsageError when
  /// `model` cannot take 28x28 images; RuntimeFailure naming the file (and
  /// the Debian package) when one is missing or malformed.
  FashionMnist(const models::ModelConfig& model, uint64_t seed, const std::string& dir = kDefaultDir);
  models::Batch train_batch(const std::vector<int64_t>& ids) const override;
  models::Batch validation_batch(const std::vector<int64_t>& ids) const override;
  std::string describe() const override;
  int64_t train_size() const { return train_labels_.size(0); }
  int64_t test_size() const { return test_labels_.size(0); }

 private:
  models::Batch rows(const torch::Tensor& images, const torch::Tensor& labels,
                     const std::vector<int64_t>& indices) const;
  bool flatten_;  // mlp: [N, 784]; cnn: [N, 1, 28, 28]
  uint64_t seed_;
  torch::Tensor train_images_, test_images_;  // uint8 [N, 28, 28], normalized per batch
  torch::Tensor train_labels_, test_labels_;  // int64 [N]
};

}  // namespace paratorch::data
