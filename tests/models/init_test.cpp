// tests/models/init_test.cpp — initialization depends on (seed, name) only.
#include <gtest/gtest.h>

#include <paratorch/init.h>

using paratorch::full_init;
using paratorch::InitSpec;

TEST(Init, SameSeedAndNameGiveSameTensorDifferentNamesDiffer) {
  auto spec = InitSpec::normal(0.0, 0.02);
  auto a = full_init(spec, {4, 8}, 1234, "h.0.attn.c_attn.weight");
  auto b = full_init(spec, {4, 8}, 1234, "h.0.attn.c_attn.weight");
  auto c = full_init(spec, {4, 8}, 1234, "h.1.attn.c_attn.weight");
  auto d = full_init(spec, {4, 8}, 1235, "h.0.attn.c_attn.weight");
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_FALSE(torch::equal(a, c));
  EXPECT_FALSE(torch::equal(a, d));
  EXPECT_NE(paratorch::derive_seed(1, "a"), paratorch::derive_seed(2, "a"));
}

TEST(Init, StatisticsFollowTheSpec) {
  auto n = full_init(InitSpec::normal(0.0, 0.02), {256, 256}, 7, "w");
  EXPECT_NEAR(n.std().item<double>(), 0.02, 0.001);
  auto u = full_init(InitSpec::uniform(-0.5, 0.5), {1000}, 7, "u");
  EXPECT_GE(u.min().item<double>(), -0.5);
  EXPECT_LE(u.max().item<double>(), 0.5);
  EXPECT_TRUE(torch::equal(full_init(InitSpec::constant(1.0), {3}, 7, "ln.weight"), torch::ones({3})));
}
