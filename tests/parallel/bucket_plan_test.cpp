// tests/parallel/bucket_plan_test.cpp — DDP's bucket assignment.
#include <gtest/gtest.h>

#include <paratorch/ddp.h>

using paratorch::plan_buckets;

namespace {
torch::Tensor param(int64_t n, torch::ScalarType t = torch::kFloat) {
  return torch::zeros({n}, t).requires_grad_(true);
}
}  // namespace

TEST(BucketPlan, ReverseOrderUnderTheCap) {
  std::vector<torch::Tensor> ps = {param(100), param(100), param(100), param(100)};
  auto b = plan_buckets(ps, 800);  // two float params per bucket
  ASSERT_EQ(b.size(), 2u);
  EXPECT_EQ(b[0].params, (std::vector<size_t>{3, 2}));
  EXPECT_EQ(b[1].params, (std::vector<size_t>{1, 0}));
  EXPECT_EQ(b[0].numel, 200);
}

TEST(BucketPlan, OversizedParamGetsItsOwnBucketAndDtypesSplit) {
  std::vector<torch::Tensor> ps = {param(10), param(1000), param(10, torch::kDouble), param(10)};
  auto b = plan_buckets(ps, 400);
  ASSERT_EQ(b.size(), 4u);
  EXPECT_EQ(b[0].params, (std::vector<size_t>{3}));
  EXPECT_EQ(b[1].dtype, torch::kDouble);
  EXPECT_EQ(b[2].params, (std::vector<size_t>{1}));
  EXPECT_EQ(b[3].params, (std::vector<size_t>{0}));
}

TEST(BucketPlan, SkipsFrozenParameters) {
  auto frozen = torch::zeros({5});
  std::vector<torch::Tensor> ps = {param(5), frozen, param(5)};
  auto b = plan_buckets(ps, 1 << 20);
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(b[0].params, (std::vector<size_t>{2, 0}));
}
