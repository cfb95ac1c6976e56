// tests/parallel/zero/flat_shards_mpi_test.cpp — zero::FlatShards, the flat
// buffers under every ZeRO-1 and ZeRO-2 (the public optimizer, ZeroEngine,
// the pipeline's ZeRO-1), checked directly: the buffers follow plan_buckets
// and the parameters are views of them; each gradient mode leaves the dp
// average in the shard; publication puts every rank's shard everywhere (by
// all-gather, or in one node-shared copy); and when it goes, the parameters
// keep their values in memory of their own.
#include <gtest/gtest.h>

#include "mpi_test_env.h"
#include "parallel/zero/flat_shards.h"
#include <paratorch/ddp.h>
#include <paratorch/init.h>

using namespace paratorch;

namespace {

// Sizes no group size divides (49, 5, 21, 3, 12): shards pad and parameters straddle shard boundaries.
std::vector<torch::Tensor> make_params() {
  std::vector<torch::Tensor> out;
  const std::vector<std::vector<int64_t>> shapes{{7, 7}, {5}, {3, 7}, {3}, {4, 3}};
  for (size_t i = 0; i < shapes.size(); ++i)
    out.push_back(torch::randn(shapes[i], generator_for(40 + i, "flat_shards")).requires_grad_(true));
  return out;
}

std::vector<std::string> names_of(size_t n) {
  std::vector<std::string> names;
  for (size_t i = 0; i < n; ++i) names.push_back("p" + std::to_string(i));
  return names;
}

zero::FlatShardsOptions small(int stage) {
  zero::FlatShardsOptions o;
  o.stage = stage;
  o.bucket_mb = 120.0 / (1024 * 1024);  // 30 floats: several buffers
  return o;
}

// Each rank's gradient of every element is rank + 1, so the dp average is (size + 1) / 2.
void backward_with_rank_gradient(const std::vector<torch::Tensor>& params, int rank) {
  auto loss = torch::zeros({});
  for (const auto& p : params) loss = loss + p.sum() * static_cast<double>(rank + 1);
  loss.backward();
}

double average_gradient(const Communicator& group) { return (group.size() + 1) / 2.0; }

}  // namespace

TEST(FlatShards, BuffersFollowThePlanAndTheParametersAreTheirViews) {
  auto group = test_world().comm();
  auto params = make_params();
  std::vector<torch::Tensor> before;
  for (const auto& p : params) before.push_back(p.detach().clone());
  const auto o = small(1);
  const auto plan = plan_buckets(params, static_cast<int64_t>(o.bucket_mb * 1024 * 1024), torch::kFloat);
  zero::FlatShards flat(params, names_of(params.size()), group, o);
  ASSERT_GT(plan.size(), 1u);
  ASSERT_EQ(flat.buffers().size(), plan.size());
  for (size_t b = 0; b < plan.size(); ++b) {
    const auto& buffer = flat.buffers()[b];
    ASSERT_EQ(buffer.members, plan[b].params);
    const auto views = buffer.layout->views(buffer.flat);
    for (size_t k = 0; k < buffer.members.size(); ++k) {
      const size_t i = buffer.members[k];
      EXPECT_EQ(params[i].data_ptr(), views[k].data_ptr()) << "parameter " << i;
      EXPECT_TRUE(torch::equal(params[i].detach(), before[i])) << "parameter " << i;
    }
    // fp32: the master is this rank's slice of the parameters themselves, and its .grad the gradient shard.
    EXPECT_EQ(buffer.master.data_ptr(), buffer.flat.narrow(0, buffer.layout->shard_begin(), 1).data_ptr());
    EXPECT_EQ(buffer.master.grad().data_ptr(), buffer.grad.data_ptr());
  }
}

TEST(FlatShards, EveryGradientModeLeavesTheAverageInTheShard) {
  auto group = test_world().comm();
  const double average = average_gradient(*group);
  for (int stage : {1, 2})
    for (bool whole : {false, true}) {
      SCOPED_TRACE("stage " + std::to_string(stage) + (whole ? ", whole" : ", shard only"));
      auto params = make_params();
      auto o = small(stage);
      o.whole_gradients = whole;
      zero::FlatShards flat(params, names_of(params.size()), group, o);
      flat.zero_grad();
      backward_with_rank_gradient(params, group->rank());
      flat.finalize();
      for (const auto& b : flat.buffers()) {
        // The padding past the last parameter gets no gradient.
        const int64_t real = std::min(b.layout->shard_numel(), b.layout->numel() - b.layout->shard_begin());
        if (real > 0) EXPECT_TRUE(torch::allclose(b.grad.narrow(0, 0, real), torch::full({real}, average)));
      }
      if (stage == 1 && whole)  // every .grad holds the average, as after DDP
        for (const auto& p : params) EXPECT_TRUE(torch::allclose(p.grad(), torch::full_like(p, average)));
    }
}

// No reducer: the .grad (already averaged elsewhere) is copied into the
// shard, each piece from its place in its parameter.
TEST(FlatShards, WithoutAReducerTheShardTakesItsPiecesOfEachGradient) {
  auto group = test_world().comm();
  auto params = make_params();
  auto o = small(1);
  o.reduce_gradients = false;
  zero::FlatShards flat(params, names_of(params.size()), group, o);
  for (auto& p : params) p.mutable_grad() = torch::arange(p.numel(), torch::kFloat).view(p.sizes()) + 0.5;
  flat.finalize();
  for (const auto& b : flat.buffers()) {
    EXPECT_FALSE(b.full_grad.defined());  // nothing whole is kept
    for (const auto& piece : b.layout->pieces()) {
      const auto want = torch::arange(piece.param_offset, piece.param_offset + piece.length, torch::kFloat) + 0.5;
      EXPECT_TRUE(torch::equal(b.grad.narrow(0, piece.shard_offset, piece.length), want));
    }
  }
}

// Each rank writes r + 1 into its masters; after publish() every rank's
// buffers hold each rank's value in that rank's shard, in fp32 and bf16,
// through the all-gather and through one node-shared copy.
TEST(FlatShards, PublishPutsEveryRanksShardInEveryReplica) {
  auto group = test_world().comm();
  for (auto dtype : {torch::kFloat, torch::kBFloat16})
    for (bool one_copy : {false, true}) {
      SCOPED_TRACE(std::string(dtype == torch::kFloat ? "fp32" : "bf16") + (one_copy ? ", one node copy" : ""));
      auto params = make_params();
      auto o = small(1);
      o.param_dtype = dtype;
      o.one_copy_per_node = one_copy;
      zero::FlatShards flat(params, names_of(params.size()), group, o);
      // On one node the communicator maps shared memory (PARATORCH_SHM=0 turns it off).
      EXPECT_EQ(flat.shares_parameters(), one_copy);
      flat.before_update();
      {
        torch::NoGradGuard no_grad;
        for (const auto& b : flat.buffers()) b.master.fill_(group->rank() + 1);
      }
      flat.publish();
      for (const auto& b : flat.buffers()) {
        ASSERT_EQ(b.flat.scalar_type(), dtype);
        const int64_t shard = b.layout->shard_numel();
        for (int r = 0; r < group->size(); ++r)
          EXPECT_TRUE(torch::equal(b.flat.narrow(0, r * shard, shard).to(torch::kFloat), torch::full({shard}, r + 1.0)))
              << "rank " << r << "'s shard";
      }
      group->barrier();  // every rank has read the one copy before the next case builds another
    }
}

// The buffers may be the communicator's memory (its shared window, its
// reduce buffer). Once FlatShards and the communicator are gone the
// parameters still hold their values, in memory of their own, and the
// gradients that were views of the reduce buffer are gone rather than dangling.
TEST(FlatShards, WhenItGoesTheParametersKeepTheirValuesInMemoryOfTheirOwn) {
  auto world = test_world().comm();
  auto params = make_params();
  std::vector<torch::Tensor> want;
  {
    auto group = world->split(0, world->rank(), "flat_shards_teardown");
    auto o = small(1);
    o.one_copy_per_node = true;
    zero::FlatShards flat(params, names_of(params.size()), group, o);
    ASSERT_TRUE(flat.shares_parameters());
    flat.zero_grad();
    backward_with_rank_gradient(params, group->rank());
    flat.finalize();
    flat.before_update();
    {
      torch::NoGradGuard no_grad;
      for (const auto& b : flat.buffers()) b.master.add_(1.0);
    }
    flat.publish();
    for (const auto& p : params) want.push_back(p.detach().clone());
    group->barrier();
  }
  world->barrier();
  for (size_t i = 0; i < params.size(); ++i) {
    EXPECT_FALSE(params[i].grad().defined()) << "parameter " << i << "'s gradient outlived its buffer";
    EXPECT_TRUE(torch::equal(params[i].detach(), want[i])) << "parameter " << i;
  }
}
