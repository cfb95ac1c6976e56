// tests/formats/fashion_mnist_test.cpp — the Fashion-MNIST dataset over the
// Debian package's files: shapes, labels, determinism, normalization, and
// the messages for a missing package or a model that cannot take images.
#include <gtest/gtest.h>

#include "data/fashion_mnist.h"
#include "models/model.h"
#include <paratorch/errors.h>

#include <unistd.h>

using paratorch::data::FashionMnist;

namespace {

paratorch::models::ModelConfig image_model(const std::string& name) {
  paratorch::models::ModelConfig c;
  c.name = name;
  c.n_layers = 2;
  c.d_model = 8;
  c.d_in = 784;
  c.n_classes = 10;
  return c;
}

bool package_installed() { return ::access(FashionMnist::kDefaultDir, F_OK) == 0; }

std::vector<int64_t> ids_from(int64_t first, int64_t count) {
  std::vector<int64_t> ids(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) ids[static_cast<size_t>(i)] = first + i;
  return ids;
}

}  // namespace

/// Loaded once for the whole suite: unpacking 60000 images takes a moment.
class FashionMnistData : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (package_installed()) cnn_data_ = new FashionMnist(image_model("cnn"), 1234);
  }
  static void TearDownTestSuite() {
    delete cnn_data_;
    cnn_data_ = nullptr;
  }
  void SetUp() override {
    if (!cnn_data_) GTEST_SKIP() << FashionMnist::kDefaultDir << " is missing (package dataset-fashion-mnist)";
  }
  static FashionMnist* cnn_data_;
};
FashionMnist* FashionMnistData::cnn_data_ = nullptr;

TEST_F(FashionMnistData, SplitsShapesAndLabels) {
  EXPECT_EQ(cnn_data_->train_size(), 60000);
  EXPECT_EQ(cnn_data_->test_size(), 10000);
  auto batch = cnn_data_->train_batch(ids_from(0, 64));
  EXPECT_EQ(batch.input.sizes(), (std::vector<int64_t>{64, 1, 28, 28}));
  EXPECT_EQ(batch.input.scalar_type(), torch::kFloat);
  EXPECT_EQ(batch.target.sizes(), (std::vector<int64_t>{64}));
  EXPECT_EQ(batch.target.scalar_type(), torch::kLong);
  auto labels = cnn_data_->validation_batch(ids_from(0, 10000)).target;
  EXPECT_EQ(labels.min().item<int64_t>(), 0);
  EXPECT_EQ(labels.max().item<int64_t>(), 9);
  EXPECT_EQ(torch::bincount(labels).eq(1000).sum().item<int64_t>(), 10);  // the test split is balanced
  EXPECT_NE(cnn_data_->describe().find("60000 train / 10000 test"), std::string::npos);
}

TEST_F(FashionMnistData, SamplesArePureFunctionsOfSeedAndId) {
  auto a = cnn_data_->train_batch({5, 6, 7});
  auto b = cnn_data_->train_batch({7});
  EXPECT_TRUE(torch::equal(a.input, cnn_data_->train_batch({5, 6, 7}).input));
  EXPECT_TRUE(torch::equal(a.input[2], b.input[0]));
  EXPECT_EQ(a.target[2].item<int64_t>(), b.target[0].item<int64_t>());
  EXPECT_FALSE(torch::equal(a.input[0], a.input[1]));
  EXPECT_TRUE(torch::equal(cnn_data_->validation_batch({3}).input, cnn_data_->validation_batch({10003}).input));
  EXPECT_EQ(cnn_data_->train_batch({}).input.sizes(), (std::vector<int64_t>{0, 1, 28, 28}));
}

TEST_F(FashionMnistData, PixelsAreNormalized) {
  auto x = cnn_data_->train_batch(ids_from(1000, 1000)).input;
  EXPECT_NEAR(x.mean().item<double>(), 0.0, 0.1);
  EXPECT_NEAR(x.std().item<double>(), 1.0, 0.1);
  EXPECT_NEAR(x.min().item<double>(), -FashionMnist::kMean / FashionMnist::kStd, 1e-5);  // black pixels
}

TEST_F(FashionMnistData, FeedsTheCnnAndTheFlatMlp) {
  auto cnn = paratorch::models::make_model(image_model("cnn"));
  cnn->initialize(1);
  auto batch = cnn_data_->train_batch(ids_from(0, 4));
  EXPECT_EQ(cnn->forward(batch.input).sizes(), (std::vector<int64_t>{4, 10}));
  EXPECT_TRUE(std::isfinite(cnn->loss(batch).item<double>()));

  auto mlp_data = paratorch::data::make_dataset("fashion_mnist", image_model("mlp"), 1234);
  auto flat = mlp_data->validation_batch({0, 1});
  EXPECT_EQ(flat.input.sizes(), (std::vector<int64_t>{2, 784}));
  EXPECT_TRUE(torch::equal(flat.input, cnn_data_->validation_batch({0, 1}).input.reshape({2, 784})));
}

TEST(FashionMnist, ModelsThatCannotTakeImagesAreUsageErrors) {
  auto mlp = image_model("mlp");
  mlp.d_in = 100;
  try {
    paratorch::data::make_dataset("fashion_mnist", mlp, 1);
    FAIL();
  } catch (const paratorch::UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("set [model] d_in = 784 (it is 100)"), std::string::npos) << e.what();
  }
  try {
    paratorch::data::make_dataset("fashion_mnist", image_model("gpt"), 1);
    FAIL() << "gpt fed with images";
  } catch (const paratorch::UsageError& e) {  // the families named from the registry
    EXPECT_NE(std::string(e.what()).find("does not fit [model] name = \"gpt\"; it feeds: cnn, mlp"), std::string::npos)
        << e.what();
  }
  auto cnn = image_model("cnn");
  cnn.n_classes = 5;
  EXPECT_THROW(FashionMnist(cnn, 1, "/nonexistent"), paratorch::UsageError);
}

TEST(FashionMnist, MissingFilesNameTheDebianPackage) {
  try {
    FashionMnist(image_model("cnn"), 1, "/nonexistent/fashion-mnist");
    FAIL();
  } catch (const paratorch::RuntimeFailure& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("/nonexistent/fashion-mnist/train-images-idx3-ubyte.gz is missing"), std::string::npos)
        << message;
    EXPECT_NE(message.find("install Debian package dataset-fashion-mnist (scripts/bootstrap does)"), std::string::npos)
        << message;
  }
}
