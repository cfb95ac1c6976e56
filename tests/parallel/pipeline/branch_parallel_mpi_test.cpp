// tests/parallel/pipeline/branch_parallel_mpi_test.cpp — the branch-parallel example
// model on the world group equals the same model with every branch local:
// same output and loss on every rank, same gradients where they live (each
// branch on its owner, the replicated stem and head everywhere), and the
// same parameters after a few SGD steps.
#include <gtest/gtest.h>

#include "mpi_test_env.h"
#include "parallel/pipeline/branch_parallel.h"

namespace paratorch::pipeline {
namespace {

double rel(const torch::Tensor& a, const torch::Tensor& ref) {
  return (a - ref).norm().item<double>() / std::max(ref.norm().item<double>(), 1e-12);
}

void expect_branch_parallel_equals_local(BranchCombine combine) {
  auto& world = test_world();
  torch::manual_seed(11);
  BranchyMlp parallel(12, 24, 5, world.comm(), combine);
  torch::manual_seed(11);
  BranchyMlp local(12, 24, 5, nullptr, combine);
  torch::manual_seed(3);  // the same batch on every rank: the layers around the branches are replicated
  auto x = torch::randn({8, 12});
  auto y = torch::randint(0, 5, {8}, torch::kLong);
  auto owned = [&](const std::string& name) {  // does this rank hold this parameter's gradient?
    for (size_t b = 0; b < parallel->branches->branch_count(); ++b)
      if (name.rfind("branches." + BranchParallelImpl::branch_prefix(b), 0) == 0) return parallel->branches->is_local(b);
    return true;  // stem, head
  };
  for (int step = 0; step < 3; ++step) {
    parallel->zero_grad();
    local->zero_grad();
    auto loss = torch::cross_entropy_loss(parallel(x), y);
    auto ref = torch::cross_entropy_loss(local(x), y);
    EXPECT_NEAR(loss.item<double>(), ref.item<double>(), 1e-5 * std::abs(ref.item<double>())) << "step " << step;
    loss.backward();
    ref.backward();
    auto ref_params = local->named_parameters(true);
    torch::NoGradGuard no_grad;
    for (auto& item : parallel->named_parameters(true)) {
      auto& r = ref_params[item.key()];
      if (owned(item.key())) {
        ASSERT_TRUE(item.value().grad().defined()) << item.key();
        EXPECT_LT(rel(item.value().grad(), r.grad()), 1e-5) << item.key() << " step " << step;
        EXPECT_LT(rel(item.value(), r), 1e-5) << item.key() << " step " << step;
        item.value().sub_(0.1 * item.value().grad());
      } else {
        EXPECT_FALSE(item.value().grad().defined() && item.value().grad().abs().sum().item<double>() > 0) << item.key();
      }
      r.sub_(0.1 * r.grad());
    }
  }
}

TEST(BranchParallel, ConcatenatedBranchesOnTheGroupEqualTheLocalModel) {
  expect_branch_parallel_equals_local(BranchCombine::kConcat);
}

TEST(BranchParallel, SummedBranchesOnTheGroupEqualTheLocalModel) {
  expect_branch_parallel_equals_local(BranchCombine::kSum);
}

TEST(BranchParallel, BranchesAreSpreadOverTheGroup) {
  auto& world = test_world();
  BranchyMlp model(12, 24, 5, world.comm());
  int mine = 0;
  for (size_t b = 0; b < model->branches->branch_count(); ++b) {
    EXPECT_EQ(model->branches->owner_of(b), static_cast<int>(b) % world.size());
    mine += model->branches->is_local(b);
  }
  EXPECT_EQ(mine, (3 - world.rank() + world.size() - 1) / world.size());  // ranks get branches round-robin
}

}  // namespace
}  // namespace paratorch::pipeline
