// tests/parallel/zero/zero_shared_parameters_mpi_test.cpp —
// ZeroRedundancyOptimizerOptions::share_parameters_on_node: the ranks of
// one node map one copy of the parameters (a write by one rank is seen by
// all), training with it equals a copy per rank bit for bit (stages 1 and 2,
// fp32 and bf16) and one process within 1e-5, and parameters on another
// device are refused by the field's name.
#include <gtest/gtest.h>

#include "mpi_test_env.h"
#include "zero_test_models.h"
#include <paratorch/errors.h>
#include <paratorch/zero.h>

using namespace paratorch;

namespace {

OptimizerFactory adamw() {
  return [](std::vector<torch::Tensor> shards) {
    return std::make_unique<torch::optim::AdamW>(shards, torch::optim::AdamWOptions(0.05).weight_decay(0.1));
  };
}

ZeroRedundancyOptimizerOptions shared_options(int stage, bool share) {
  ZeroRedundancyOptimizerOptions o;
  o.stage = stage;
  o.bucket_mb = 100.0 / (1024 * 1024);  // ~25 floats: several flat buffers, parameters split across them
  o.share_parameters_on_node = share;
  return o;
}

// Rank 0 writes `value` into the first element of the last layer's bias;
// what every rank then reads there.
float written_by_rank0_seen_here(zero_test::Mlp& net, Communicator& group, float value) {
  torch::NoGradGuard no_grad;
  auto bias = net->layers[4]->named_parameters()["bias"];
  group.barrier();
  if (group.rank() == 0) bias[0].fill_(value);
  group.barrier();
  return bias[0].item<float>();
}

// `steps` AdamW steps on this rank's slice of each global batch (in bf16
// compute when `dtype` is bf16); the parameters after them, in fp32.
std::map<std::string, torch::Tensor> train(int stage, bool share, torch::ScalarType dtype, int steps) {
  auto comm = test_world().comm();
  auto net = zero_test::make_mlp();
  auto o = shared_options(stage, share);
  o.mixed_precision.param_dtype = dtype;
  ZeroRedundancyOptimizer opt(net.ptr(), comm, adamw(), o);
  EXPECT_EQ(opt.parameters_shared(), share);  // one node under mpirun: the backend maps shared memory
  for (int64_t s = 0; s < steps; ++s) {
    opt.zero_grad();
    const auto b = local_slice(zero_test::batch(s), comm->rank(), comm->size());
    torch::mse_loss(net->forward(b.input.to(dtype)).to(torch::kFloat), b.target).backward();
    opt.step();
  }
  std::map<std::string, torch::Tensor> out;
  for (const auto& [name, p] : named_parameter_copies(*net)) out[name] = p.to(torch::kFloat);
  return out;
}

}  // namespace

TEST(ZeroSharedParameters, EveryRankOfTheNodeMapsOneCopy) {
  auto comm = test_world().comm();
  for (bool share : {false, true}) {
    auto net = zero_test::make_mlp();
    ZeroRedundancyOptimizer opt(net.ptr(), comm, adamw(), shared_options(1, share));
    ASSERT_EQ(opt.parameters_shared(), share);
    const float seen = written_by_rank0_seen_here(net, *comm, 42.0f);
    if (share || comm->rank() == 0)
      EXPECT_EQ(seen, 42.0f) << "share=" << share;
    else
      EXPECT_NE(seen, 42.0f) << "a copy per rank, yet rank 0's write reached rank " << comm->rank();
    comm->barrier();  // nobody's optimizer (and its shared memory) goes while another rank still reads
  }
}

// Publishing by a barrier over one copy puts the same values in every
// replica as the all-gather does: bit for bit, at both stages and in bf16.
TEST(ZeroSharedParameters, TrainsExactlyAsACopyPerRank) {
  for (int stage : {1, 2})
    for (auto dtype : {torch::kFloat, torch::kBFloat16}) {
      const auto own = train(stage, false, dtype, 4);
      const auto shared = train(stage, true, dtype, 4);
      for (const auto& [name, p] : own)
        EXPECT_TRUE(torch::equal(p, shared.at(name)))
            << "stage " << stage << " " << c10::toString(dtype) << " " << name;
    }
}

// And both equal one process (fp32, within verify's tolerance).
TEST(ZeroSharedParameters, EqualsOneProcess) {
  const auto shared = train(2, true, torch::kFloat, 4);
  auto net = zero_test::make_mlp();
  torch::optim::AdamW opt(net->parameters(), torch::optim::AdamWOptions(0.05).weight_decay(0.1));
  for (int64_t s = 0; s < 4; ++s) {
    opt.zero_grad();
    zero_test::loss_of(net, zero_test::batch(s)).backward();
    opt.step();
  }
  for (const auto& [name, p] : named_parameter_copies(*net)) {
    const double rel = ((shared.at(name) - p).abs().max() / p.abs().max().clamp_min(1e-12)).item<double>();
    EXPECT_LT(rel, 1e-5) << name;
  }
}

TEST(ZeroSharedParameters, ParametersOffTheCpuAreRefusedByTheFieldsName) {
  // A device CI has: meta (libtorch 1.13's Module::to cannot move a Linear there).
  auto net = std::make_shared<torch::nn::Module>();
  net->register_parameter("weight", torch::empty({2, 3}, torch::Device(torch::kMeta)));
  try {
    ZeroRedundancyOptimizer opt(net, test_world().comm(), adamw(), shared_options(1, true));
    ADD_FAILURE() << "meta parameters accepted for a node-shared copy";
  } catch (const UsageError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("ZeroRedundancyOptimizerOptions::share_parameters_on_node"), std::string::npos) << what;
    EXPECT_NE(what.find("'weight' is on meta"), std::string::npos) << what;
  }
}
