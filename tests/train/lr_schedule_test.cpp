// tests/train/lr_schedule_test.cpp — warm-up + cosine schedule and global-norm clipping.
#include <gtest/gtest.h>

#include "train/grad_clip.h"
#include "train/lr_schedule.h"

using paratorch::train::LrSchedule;

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
  EXPECT_NEAR(paratorch::train::clip_grad_norm({a, b}, 0.0), 5.0, 1e-6);  // measure only
  EXPECT_NEAR(paratorch::train::clip_grad_norm({a, b}, 1.0), 5.0, 1e-6);
  EXPECT_NEAR(a.grad()[0].item<float>(), 0.6f, 1e-5);
  EXPECT_NEAR(b.grad()[0].item<float>(), 0.8f, 1e-5);
  // Another shard holding squares of 24: norm sqrt(1 + 24) = 5.
  double n = paratorch::train::clip_grad_norm({a, b}, 0.0, [](double local) { return local + 24.0; });
  EXPECT_NEAR(n, 5.0, 1e-5);
}
