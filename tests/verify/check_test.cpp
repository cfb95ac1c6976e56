// tests/verify/check_test.cpp — the public equivalence check judges, and can fail.
#include <paratorch/errors.h>
#include <paratorch/verify.h>

#include <gtest/gtest.h>

namespace {

std::shared_ptr<torch::nn::Linear> make_net() {
  torch::manual_seed(7);
  return std::make_shared<torch::nn::Linear>(4, 3);
}

paratorch::Batch batch_of(int64_t step) {
  torch::manual_seed(100 + step);
  return {torch::randn({8, 4}), torch::randn({8, 3})};
}

paratorch::Trainee sgd_trainee(double lr, double loss_scale = 1.0) {
  auto net = make_net();
  auto opt = std::make_shared<torch::optim::SGD>((*net)->parameters(), lr);
  return paratorch::plain_trainee(net->ptr(), opt, [net, loss_scale](const paratorch::Batch& b) {
    return loss_scale * torch::mse_loss((*net)->forward(b.input), b.target);
  });
}

TEST(Verify, IdenticalTraineesPass) {
  auto report = paratorch::check_equivalence(nullptr, batch_of, [] { return sgd_trainee(0.1); },
                                             [] { return sgd_trainee(0.1); });
  EXPECT_TRUE(report.pass);
  EXPECT_EQ(report.max_rel_loss_diff, 0.0);
  EXPECT_EQ(report.parallel_losses.size(), 5u);
  EXPECT_NE(report.summary_line("same").find("verify: same steps=5"), std::string::npos);
  EXPECT_NE(report.summary_line("same").find("PASS"), std::string::npos);
}

// A parallel run that averages over the wrong count (a gradient twice too
// large) must fail on the parameters even though step 0's loss agrees.
TEST(Verify, AWrongGradientScaleFailsOnParameters) {
  auto report = paratorch::check_equivalence(nullptr, batch_of, [] { return sgd_trainee(0.1); },
                                             [] { return sgd_trainee(0.2); });
  EXPECT_FALSE(report.pass);
  EXPECT_GT(report.max_rel_param_diff, 1e-3);
  EXPECT_NE(report.summary_line("x").find("FAIL"), std::string::npos);
}

TEST(Verify, ALossNormalizedDifferentlyFailsOnLosses) {
  paratorch::EquivalenceOptions options;
  options.judge_parameters = false;
  auto report = paratorch::check_equivalence(nullptr, batch_of, [] { return sgd_trainee(0.1); },
                                             [] { return sgd_trainee(0.1, 1.0 + 1e-3); }, options);
  EXPECT_FALSE(report.pass);
  EXPECT_GT(report.max_rel_loss_diff, 5e-4);
}

TEST(Verify, NanLossFails) {
  auto nan_trainee = [] {
    auto t = sgd_trainee(0.1);
    t.step = [](const paratorch::Batch&) { return std::nan(""); };
    return t;
  };
  auto report = paratorch::check_equivalence(nullptr, batch_of, [] { return sgd_trainee(0.1); }, nan_trainee);
  EXPECT_FALSE(report.pass);
}

TEST(Verify, MissingOrShardedParameterIsNamed) {
  auto sharded = [] {
    auto t = sgd_trainee(0.1);
    t.full_parameters = [] {
      return std::map<std::string, torch::Tensor>{{"weight", torch::zeros({2, 4})}, {"bias", torch::zeros({3})}};
    };
    return t;
  };
  try {
    paratorch::check_equivalence(nullptr, batch_of, [] { return sgd_trainee(0.1); }, sharded);
    FAIL() << "a sharded tensor was accepted";
  } catch (const paratorch::RuntimeFailure& e) {
    EXPECT_NE(std::string(e.what()).find("'weight' has shape"), std::string::npos) << e.what();
  }
}

TEST(Verify, LocalSliceSplitsContiguouslyAndRefusesRemainders) {
  paratorch::Batch b{torch::arange(12).view({6, 2}), torch::arange(6)};
  auto s = paratorch::local_slice(b, 1, 3);
  EXPECT_TRUE(torch::equal(s.target, torch::tensor({2, 3}, torch::kLong)));
  EXPECT_THROW(paratorch::local_slice(b, 0, 4), paratorch::UsageError);
  paratorch::EquivalenceOptions bad;
  bad.steps = 0;
  EXPECT_THROW(bad.validate(), paratorch::UsageError);
}

}  // namespace
