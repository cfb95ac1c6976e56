// tests/parallel/pipeline/pipeline_options_test.cpp — PipelineOptions and
// DevicePlacementOptions checks, and PlacedModel (in-process model
// parallelism) against the plain forward, in one process.
#include <gtest/gtest.h>
#include <paratorch/errors.h>
#include <paratorch/pipeline.h>

namespace {

template <typename F>
std::string usage_message(F f) {
  try {
    f();
  } catch (const paratorch::UsageError& e) {
    return e.what();
  }
  return "(no UsageError)";
}

TEST(PipelineOptions, DefaultsAreValid) { EXPECT_NO_THROW(paratorch::PipelineOptions{}.validate()); }

TEST(PipelineOptions, MessagesNameTheField) {
  paratorch::PipelineOptions o;
  o.microbatches = 0;
  EXPECT_NE(usage_message([&] { o.validate(); }).find("PipelineOptions::microbatches must be >= 1, got 0"),
            std::string::npos);
  o = {};
  o.virtual_stages = 2;
  EXPECT_NE(usage_message([&] { o.validate(); })
                .find("PipelineOptions::virtual_stages = 2 needs PipelineOptions::schedule = PipelineSchedule::kInterleaved"),
            std::string::npos);
  o = {};
  o.partition = paratorch::PartitionBy::kSplitPoints;
  EXPECT_NE(usage_message([&] { o.validate(); }).find("needs PipelineOptions::split_points"), std::string::npos);
  o = {};
  o.split_points = {"b"};
  EXPECT_NE(usage_message([&] { o.validate(); }).find("PipelineOptions::partition is not PartitionBy::kSplitPoints"),
            std::string::npos);
  o = {};
  o.tied = {{"a.weight"}};
  EXPECT_NE(usage_message([&] { o.validate(); }).find("PipelineOptions::tied groups must name at least 2"),
            std::string::npos);
}

// PyTorch's ToyModel, net1 and net2 placed on two devices of one process.
struct ToyImpl : torch::nn::Module {
  ToyImpl() : net1(register_module("net1", torch::nn::Linear(10, 10))), net2(register_module("net2", torch::nn::Linear(10, 5))) {}
  torch::Tensor forward(const torch::Tensor& x) { return net2(torch::relu(net1(x))); }
  torch::nn::Linear net1, net2;
};
TORCH_MODULE(Toy);

std::vector<paratorch::PipelineBlock> toy_blocks(Toy& toy) {
  auto net1 = toy->net1;
  return {{"net1", net1.ptr(), [net1](const torch::Tensor& x) mutable { return torch::relu(net1(x)); }},
          {"net2", torch::nn::AnyModule(toy->net2)}};
}

TEST(PlacedModel, SplitPointPlacesNamedChildrenAndKeepsTheForward) {
  torch::manual_seed(0);
  Toy toy;
  const auto x = torch::randn({4, 10});
  const auto expected = toy->forward(x).detach();
  paratorch::DevicePlacementOptions o;
  o.partition = paratorch::PartitionBy::kSplitPoints;
  o.split_points = {"net2"};
  // Two "devices" of one process (a CPU build has no second one; the
  // mechanics are the same: each block's parameters move to its device).
  paratorch::PlacedModel placed(toy_blocks(toy), {torch::kCPU, torch::Device(torch::kCPU, 0)}, o);
  EXPECT_EQ(placed.device_of("net1"), torch::Device(torch::kCPU));
  EXPECT_EQ(placed.device_of("net2"), torch::Device(torch::kCPU, 0));
  EXPECT_TRUE(torch::allclose(placed.forward(x), expected));
  EXPECT_EQ(placed.parameters().size(), 4u);
}

TEST(PlacedModel, BadInputNamesTheField) {
  Toy toy;
  paratorch::DevicePlacementOptions o;
  o.partition = paratorch::PartitionBy::kSplitPoints;
  o.split_points = {"net3"};
  EXPECT_NE(usage_message([&] { paratorch::PlacedModel(toy_blocks(toy), {torch::kCPU, torch::kCPU}, o); })
                .find("DevicePlacementOptions::split_points names \"net3\", which is no block of the model; blocks: net1, net2"),
            std::string::npos);
  EXPECT_NE(usage_message([&] { paratorch::PlacedModel(toy_blocks(toy), {torch::kCPU, torch::kCPU, torch::kCPU}); })
                .find("PlacedModel got 3 devices for 2 blocks"),
            std::string::npos);
  o.partition = paratorch::PartitionBy::kTime;
  o.split_points = {};
  EXPECT_NE(usage_message([&] { o.validate(); }).find("DevicePlacementOptions::partition = PartitionBy::kTime"),
            std::string::npos);
}

TEST(PipelineBlock, NamesMustBeUsableAsModuleNames) {
  Toy toy;
  std::vector<paratorch::PipelineBlock> blocks = {{"net.1", torch::nn::AnyModule(toy->net1)}};
  EXPECT_NE(usage_message([&] { paratorch::PlacedModel(blocks, {torch::kCPU}); })
                .find("PipelineBlock::name \"net.1\" must be non-empty, without '.', and unique"),
            std::string::npos);
}

TEST(PipelineBlock, BlocksOfASequentialAreItsNamedChildren) {
  torch::nn::Sequential seq({{"seq1", torch::nn::Linear(3, 4)}, {"relu", torch::nn::ReLU()}, {"seq2", torch::nn::Linear(4, 2)}});
  const auto blocks = paratorch::blocks_of(seq);
  ASSERT_EQ(blocks.size(), 3u);
  EXPECT_EQ(blocks[0].name, "seq1");
  EXPECT_EQ(blocks[2].name, "seq2");
  const auto x = torch::randn({2, 3});
  auto y = x;
  for (const auto& b : blocks) y = b.forward(y);
  EXPECT_TRUE(torch::allclose(y, seq->forward(x)));
}

}  // namespace
