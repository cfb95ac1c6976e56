// tests/pipeline/device_placement_test.cpp — in-process placement of
// consecutive blocks on a device list (CPU devices here; CUDA ones on a GPU
// machine): the placed model computes the model's loss and gradients, and
// tied weights stay on one device.
#include "pipeline/device_placement.h"
#include "data/dataset.h"
#include "verify/equivalence.h"

#include <paratorch/errors.h>

#include <gtest/gtest.h>

namespace paratorch::pipeline {
namespace {

TEST(DevicePlacement, PlacedGptComputesTheModelsLossAndGradients) {
  auto config = verify::small_model("gpt");
  auto placed_model = models::make_model(config), reference = models::make_model(config);
  placed_model->initialize(5);
  reference->initialize(5);
  DevicePlacement placed(placed_model, {torch::Device("cpu:0"), torch::Device("cpu:0"), torch::Device("cpu:0")});
  EXPECT_EQ(placed.partition().stages(), 3);
  auto data = data::make_dataset("synthetic", config, 1);
  auto batch = data->train_batch({0, 1, 2, 3});
  auto loss = placed.loss(batch), ref = reference->loss(batch);
  EXPECT_NEAR(loss.item<double>(), ref.item<double>(), 1e-6);
  loss.backward();
  ref.backward();
  auto ref_params = reference->named_parameters(true);
  for (const auto& item : placed_model->named_parameters(true))
    EXPECT_TRUE(torch::allclose(item.value().grad(), ref_params[item.key()].grad(), 1e-5, 1e-7)) << item.key();
  // The head uses the tied embedding, so it runs where the embedding lives.
  EXPECT_EQ(placed.device_of_block(placed.partition().first.back() - 1), placed.device_of_block(0));
}

TEST(DevicePlacement, MoreDevicesThanBlocksIsAUsageError) {
  auto model = models::make_model(verify::small_model("mlp"));  // 4 blocks
  std::vector<torch::Device> five(5, torch::Device(torch::kCPU));
  EXPECT_THROW(DevicePlacement(model, five), UsageError);
}

}  // namespace
}  // namespace paratorch::pipeline
