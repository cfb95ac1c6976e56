// tests/parallel/pipeline/device_placement_test.cpp — in-process placement of
// consecutive blocks on a device list (two distinct CPU devices here; CUDA
// ones on a GPU machine): each stage's blocks go to its device, the placed
// model computes the model's loss and gradients, and tied weights stay on
// one device.
#include "parallel/pipeline/device_placement.h"
#include "data/dataset.h"
#include "verify/equivalence.h"

#include <paratorch/errors.h>

#include <gtest/gtest.h>

namespace paratorch::pipeline {
namespace {

// Two DISTINCT devices that need no GPU: cpu:0 and cpu (index -1) compare
// unequal as torch::Device values though both compute on the CPU, so which
// device each block was given is observable (more than two distinct CPU
// devices do not exist; libtorch rejects cpu:1 in debug builds).
const torch::Device kFirst(torch::kCPU, 0), kSecond(torch::kCPU);

TEST(DevicePlacement, PlacedGptComputesTheModelsLossAndGradients) {
  ASSERT_NE(kFirst, kSecond);
  auto config = verify::small_model("gpt");  // blocks: embed, h.0, h.1, head (tied to embed's wte)
  auto placed_model = models::make_model(config), reference = models::make_model(config);
  placed_model->initialize(5);
  reference->initialize(5);
  DevicePlacement placed(placed_model, {kFirst, kSecond});
  ASSERT_EQ(placed.partition().stages(), 2);
  // By parameters the cut falls after h.0; the head joins the embedding.
  EXPECT_EQ(placed.partition().first, (std::vector<int>{0, 2, 4}));
  const std::vector<torch::Device> expected = {kFirst, kFirst, kSecond, kFirst};
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(placed.device_of_block(i), expected[i]) << "block " << i;
  auto data = data::make_dataset("synthetic", config, 1);
  auto batch = data->train_batch({0, 1, 2, 3});
  auto loss = placed.loss(batch), ref = reference->loss(batch);
  EXPECT_NEAR(loss.item<double>(), ref.item<double>(), 1e-6);
  loss.backward();
  ref.backward();
  auto ref_params = reference->named_parameters(true);
  const auto params = placed_model->named_parameters(true);
  ASSERT_EQ(params.size(), ref_params.size());
  for (const auto& item : params)
    EXPECT_TRUE(torch::allclose(item.value().grad(), ref_params[item.key()].grad(), 1e-5, 1e-7)) << item.key();
}

// Each stage's blocks go to that stage's device, in the list's order.
TEST(DevicePlacement, StagesTakeTheListsDevicesInOrder) {
  for (const auto& devices : {std::vector<torch::Device>{kFirst, kSecond}, std::vector<torch::Device>{kSecond, kFirst}}) {
    auto model = models::make_model(verify::small_model("mlp"));  // no tied weights
    DevicePlacement placed(model, devices);
    const auto& partition = placed.partition();
    ASSERT_EQ(partition.stages(), 2);
    const int blocks = partition.first.back();
    ASSERT_GE(blocks, 3);
    for (int i = 0; i < blocks; ++i)
      EXPECT_EQ(placed.device_of_block(static_cast<size_t>(i)), devices[static_cast<size_t>(partition.stage_of_block(i))])
          << "block " << i;
    EXPECT_EQ(placed.device_of_block(0), devices[0]);
    EXPECT_EQ(placed.device_of_block(static_cast<size_t>(blocks - 1)), devices[1]);
  }
}

TEST(DevicePlacement, MoreDevicesThanBlocksIsAUsageError) {
  auto model = models::make_model(verify::small_model("mlp"));  // 4 blocks
  std::vector<torch::Device> five(5, torch::Device(torch::kCPU));
  EXPECT_THROW(DevicePlacement(model, five), UsageError);
}

}  // namespace
}  // namespace paratorch::pipeline
