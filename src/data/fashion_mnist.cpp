// src/data/fashion_mnist.cpp — see fashion_mnist.h.
#include "data/fashion_mnist.h"

#include "formats/idx.h"
#include "models/registry.h"
#include <paratorch/errors.h>

#include <unistd.h>

namespace paratorch::data {

namespace {

// A model of feature vectors (mlp) reads each image flattened to 784 features.
bool reads_features(const models::ModelConfig& model) {
  return models::model_family(model.name).input == models::ModelInput::kFeatures;
}

// The families an image source can feed: those reading images or flattened features.
bool reads_images(const models::ModelFamily& f) {
  return f.input == models::ModelInput::kImages || f.input == models::ModelInput::kFeatures;
}

void require_image_model(const models::ModelConfig& model) {
  const std::string source = "paratorch: [data] source = \"fashion_mnist\"";
  if (!reads_images(models::model_family(model.name))) {
    std::string fed;
    for (const auto& name : models::model_family_names(reads_images)) fed += (fed.empty() ? "" : ", ") + name;
    throw UsageError(source + " does not fit [model] name = \"" + model.name + "\"; it feeds: " + fed);
  }
  if (reads_features(model) && model.d_in != 784)
    throw UsageError(source + " feeds 28x28 = 784 features; set [model] d_in = 784 (it is " +
                     std::to_string(model.d_in) + ")");
  if (model.n_classes != 10)
    throw UsageError(source + " has 10 classes; set [model] n_classes = 10 (it is " +
                     std::to_string(model.n_classes) + ")");
}

/// One gzipped IDX file of the split, with the package named when it is missing.
torch::Tensor read_split_file(const std::string& dir, const std::string& name) {
  const std::string path = dir + "/" + name;
  if (::access(path.c_str(), F_OK) != 0)
    throw RuntimeFailure("paratorch: " + path + " is missing; [data] source = \"fashion_mnist\" needs it: "
                         "install Debian package dataset-fashion-mnist (scripts/bootstrap does)");
  return formats::read_idx_gz(path);
}

/// Images uint8 [N, 28, 28] and labels int64 [N] in 0..9, or RuntimeFailure.
void load_split(const std::string& dir, const std::string& prefix, torch::Tensor* images, torch::Tensor* labels) {
  const std::string images_name = prefix + "-images-idx3-ubyte.gz", labels_name = prefix + "-labels-idx1-ubyte.gz";
  *images = read_split_file(dir, images_name);
  torch::Tensor raw_labels = read_split_file(dir, labels_name);
  if (images->scalar_type() != torch::kByte || images->dim() != 3 || images->size(1) != 28 ||
      images->size(2) != 28 || images->size(0) == 0)
    throw RuntimeFailure("paratorch: " + dir + "/" + images_name + ": expected uint8 images [N, 28, 28], found " +
                         std::string(c10::toString(images->scalar_type())) + " " + c10::str(images->sizes()));
  if (raw_labels.scalar_type() != torch::kByte || raw_labels.dim() != 1 || raw_labels.size(0) != images->size(0))
    throw RuntimeFailure("paratorch: " + dir + "/" + labels_name + ": expected " + std::to_string(images->size(0)) +
                         " uint8 labels, found " + std::string(c10::toString(raw_labels.scalar_type())) + " " +
                         c10::str(raw_labels.sizes()));
  if (raw_labels.max().item<int64_t>() > 9)
    throw RuntimeFailure("paratorch: " + dir + "/" + labels_name + ": holds a label above 9");
  *labels = raw_labels.to(torch::kLong);
}

}  // namespace

FashionMnist::FashionMnist(const models::ModelConfig& model, uint64_t seed, const std::string& dir)
    : seed_(seed) {
  require_image_model(model);
  flatten_ = reads_features(model);
  load_split(dir, "train", &train_images_, &train_labels_);
  load_split(dir, "t10k", &test_images_, &test_labels_);
}

models::Batch FashionMnist::rows(const torch::Tensor& images, const torch::Tensor& labels,
                                 const std::vector<int64_t>& indices) const {
  const auto n = static_cast<int64_t>(indices.size());
  auto index = torch::from_blob(const_cast<int64_t*>(indices.data()), {n}, torch::kLong);
  auto x = images.index_select(0, index).to(torch::kFloat).div_(255.0).sub_(kMean).div_(kStd);
  return {flatten_ ? x.reshape({n, 28 * 28}) : x.unsqueeze(1), labels.index_select(0, index)};
}

models::Batch FashionMnist::train_batch(const std::vector<int64_t>& ids) const {
  std::vector<int64_t> indices(ids.size());
  for (size_t j = 0; j < ids.size(); ++j)
    indices[j] = static_cast<int64_t>(sample_hash(seed_, ids[j]) % static_cast<uint64_t>(train_size()));
  return rows(train_images_, train_labels_, indices);
}

models::Batch FashionMnist::validation_batch(const std::vector<int64_t>& ids) const {
  std::vector<int64_t> indices(ids.size());
  for (size_t j = 0; j < ids.size(); ++j) indices[j] = ((ids[j] % test_size()) + test_size()) % test_size();
  return rows(test_images_, test_labels_, indices);
}

std::string FashionMnist::describe() const {
  return "fashion_mnist: " + std::to_string(train_size()) + " train / " + std::to_string(test_size()) +
         " test images 28x28, 10 classes, pixels normalized (x/255 - 0.2860) / 0.3530" +
         (flatten_ ? ", flattened to 784 features" : "");
}

}  // namespace paratorch::data
