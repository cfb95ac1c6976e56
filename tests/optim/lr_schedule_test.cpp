// tests/optim/lr_schedule_test.cpp — warm-up + cosine schedule and global-norm clipping.
#include <gtest/gtest.h>

#include "parallel/grad_norm.h"
#include "parallel/grad_clip.h"
#include "optim/lr_schedule.h"

using paratorch::optim::LrSchedule;

TEST(LrSchedule, WarmsUpLinearlyThenDecaysToATenth) {
  LrSchedule s{1.0, 4, 104, 0.1};
  EXPECT_DOUBLE_EQ(s.at(0), 0.2);
  EXPECT_DOUBLE_EQ(s.at(3), 0.8);
  EXPECT_DOUBLE_EQ(s.at(4), 1.0);
  EXPECT_NEAR(s.at(54), 0.55, 1e-12);  // half-way: min + (max - min) / 2
  EXPECT_NEAR(s.at(104), 0.1, 1e-12);
  EXPECT_NEAR(s.at(500), 0.1, 1e-12);
  for (int64_t k = 5; k < 104; ++k) EXPECT_LE(s.at(k), s.at(k - 1));
}

TEST(GradClip, ScalesToMaxNormAndCountsOtherShards) {
  auto a = torch::zeros({2}, torch::requires_grad()), b = torch::zeros({1}, torch::requires_grad());
  a.mutable_grad() = torch::tensor({3.0f, 0.0f});
  b.mutable_grad() = torch::tensor({4.0f});
  EXPECT_NEAR(paratorch::parallel::clip_grad_norm({a, b}, 0.0), 5.0, 1e-6);  // measure only
  EXPECT_NEAR(paratorch::parallel::clip_grad_norm({a, b}, 1.0), 5.0, 1e-6);
  EXPECT_NEAR(a.grad()[0].item<float>(), 0.6f, 1e-5);
  EXPECT_NEAR(b.grad()[0].item<float>(), 0.8f, 1e-5);
  // Another shard holding squares of 24: norm sqrt(1 + 24) = 5.
  double n = paratorch::parallel::clip_grad_norm({a, b}, 0.0, [](double local) { return local + 24.0; });
  EXPECT_NEAR(n, 5.0, 1e-5);
}

TEST(GradClip, CoefficientOnlyWhenTheNormExceedsTheMax) {
  using paratorch::parallel::clip_coefficient;
  EXPECT_EQ(clip_coefficient(0.5, 1.0), 1.0);
  EXPECT_EQ(clip_coefficient(1.0, 1.0), 1.0);
  EXPECT_EQ(clip_coefficient(5.0, 0.0), 1.0);  // max_norm 0: measure only
  EXPECT_DOUBLE_EQ(clip_coefficient(4.0, 1.0), 1.0 / (4.0 + 1e-6));
}

// The fused squared norm against torch in fp64, on sizes around its block
// (1024) and chunk (65536) edges, and on tensors it must hand to torch.
TEST(GradNorm, FusedSumOfSquaresMatchesDoublePrecision) {
  torch::manual_seed(7);
  for (int64_t n : {1, 7, 1023, 1024, 1025, 65536, 65536 * 3 + 5}) {
    auto t = torch::randn({n});
    const double want = t.to(torch::kDouble).pow(2).sum().item<double>();
    EXPECT_NEAR(paratorch::parallel::sum_of_squares(t), want, 1e-6 * want) << n;
  }
  auto m = torch::randn({300, 500});
  const double want = m.to(torch::kDouble).pow(2).sum().item<double>();
  EXPECT_NEAR(paratorch::parallel::sum_of_squares(m.t()), want, 1e-6 * want);  // not contiguous
  auto half = m.to(torch::kBFloat16);
  EXPECT_NEAR(paratorch::parallel::sum_of_squares(half), half.to(torch::kDouble).pow(2).sum().item<double>(), 1e-9 * want);
  EXPECT_EQ(paratorch::parallel::sum_of_squares(torch::Tensor()), 0.0);
}

TEST(GradNorm, SameBitsWhateverTheThreadCount) {
  torch::manual_seed(8);
  auto a = torch::zeros({65536 * 5 + 17}, torch::requires_grad()), b = torch::zeros({3}, torch::requires_grad());
  a.mutable_grad() = torch::randn_like(a);
  b.mutable_grad() = torch::randn_like(b);
  const int before = at::get_num_threads();
  at::set_num_threads(1);
  const double one = paratorch::parallel::local_grad_sum_of_squares({a, b});
  at::set_num_threads(2);
  const double two = paratorch::parallel::local_grad_sum_of_squares({a, b});
  at::set_num_threads(before);
  EXPECT_EQ(one, two);
  const double want = a.grad().to(torch::kDouble).pow(2).sum().item<double>() + b.grad().to(torch::kDouble).pow(2).sum().item<double>();
  EXPECT_NEAR(one, want, 1e-6 * want);
}
