// tests/parallel/mixed_precision/master_weights_test.cpp — mixed_precision::MasterWeights and
// optim::MixedPrecisionOptimizer: the model is cast, the masters keep the
// fp32 values, gradients widen (unscaled), a skip leaves everything as it
// was, and an update reaches the model rounded.
#include "parallel/mixed_precision/master_weights.h"

#include "optim/mixed_precision_optimizer.h"

#include <paratorch/errors.h>

#include <gtest/gtest.h>

#include <cmath>

namespace paratorch::mixed_precision {
namespace {

TEST(MasterWeights, MastersKeepFp32AndTheModelComputesLow) {
  auto w = torch::tensor({1.0f + 1.0f / 1024, 3.0f}).requires_grad_(true);  // 1 + 2^-10: below bf16's mantissa
  MasterWeights masters({{"w", w}}, torch::kBFloat16);
  EXPECT_EQ(w.scalar_type(), torch::kBFloat16);
  ASSERT_NE(masters.find("w"), nullptr);
  EXPECT_EQ(masters.find("w")->scalar_type(), torch::kFloat);
  EXPECT_EQ(masters.find("w")->data_ptr<float>()[0], 1.0f + 1.0f / 1024);
  EXPECT_EQ(masters.find("nothing"), nullptr);
}

TEST(MasterWeights, GradientsWidenUnscaledAndNonFiniteIsSeen) {
  auto w = torch::ones({3}).requires_grad_(true);
  MasterWeights masters({{"w", w}}, torch::kHalf);
  (w.to(torch::kFloat) * torch::tensor({1.0f, 2.0f, 4.0f}) * 1024.0f).sum().backward();
  masters.widen_gradients(1024.0);
  const auto& g = masters.find("w")->grad();
  EXPECT_EQ(g.scalar_type(), torch::kFloat);
  EXPECT_TRUE(torch::equal(g, torch::tensor({1.0f, 2.0f, 4.0f})));
  EXPECT_FALSE(w.grad().defined()) << "the model's gradient is dropped once widened";
  EXPECT_FALSE(masters.has_non_finite_gradient());
  (w.to(torch::kFloat) * 1e6f).sum().backward();  // past fp16's 65504: the fp16 gradient is inf
  masters.widen_gradients(1.0);
  EXPECT_TRUE(masters.has_non_finite_gradient());
}

class AddOne final : public optim::Optimizer {
 public:
  explicit AddOne(torch::Tensor t) : t_(std::move(t)) {}
  void step(double, double) override {
    torch::NoGradGuard no_grad;
    t_.add_(1.0 / 1024);
    ++steps_;
  }
  std::map<std::string, torch::Tensor> state_tensors() const override { return {{"step", torch::tensor(steps_)}}; }
  void load_state_tensors(const std::map<std::string, torch::Tensor>& s) override {
    steps_ = s.at("step").item<int64_t>();
  }

 private:
  torch::Tensor t_;
};

TEST(MixedPrecisionOptimizer, SkipsWhenToldAndRefreshesTheModelAfterAnUpdate) {
  auto w = torch::ones({1}).requires_grad_(true);
  MasterWeights masters({{"w", w}}, torch::kBFloat16);
  bool allow = false;
  optim::MixedPrecisionOptimizer opt(
      std::make_unique<AddOne>(*masters.find("w")), [&] { return allow; }, [&] { masters.copy_to_model(); });
  opt.step(0.1);
  EXPECT_EQ(opt.steps_taken(), 0);
  EXPECT_EQ(masters.find("w")->item<float>(), 1.0f);
  allow = true;
  opt.step(0.1);
  EXPECT_EQ(opt.steps_taken(), 1);
  EXPECT_EQ(masters.find("w")->item<float>(), 1.0f + 1.0f / 1024);  // the master keeps the small update
  EXPECT_EQ(w.item<float>(), 1.0f);                                 // bf16 rounds it away: why masters exist
  for (int i = 0; i < 7; ++i) opt.step(0.1);
  EXPECT_EQ(w.item<float>(), 1.0f + 8.0f / 1024);  // 1 + 2^-7 is a bf16 value
  opt.load_state_tensors({{"step", torch::tensor(int64_t{42})}});
  EXPECT_EQ(opt.steps_taken(), 42);
}

}  // namespace
}  // namespace paratorch::mixed_precision

namespace paratorch::mixed_precision {
namespace {

// use_gradients: a master's .grad becomes the given fp32 tensor itself (a
// reducer's main gradient), divided by the scale in place; no copy from the
// model's .grad, which is dropped. A tensor of the wrong dtype is refused.
TEST(MasterWeights, ExternalFp32GradientsBecomeTheMastersGradients) {
  auto w = torch::ones({3}).requires_grad_(true), v = torch::ones({2}).requires_grad_(true);
  MasterWeights masters({{"w", w}, {"v", v}}, torch::kBFloat16);
  auto main = torch::tensor({2.0f, 4.0f, 8.0f});
  masters.use_gradients({{"w", main}});
  (v.to(torch::kFloat) * 3.0f).sum().backward();
  w.mutable_grad() = torch::full({3}, 99.0, torch::kBFloat16);  // must be ignored
  masters.widen_gradients(2.0);
  const auto& mw = masters.tensors()[0].second.grad();
  EXPECT_EQ(mw.data_ptr(), main.data_ptr());
  EXPECT_TRUE(torch::equal(mw, torch::tensor({1.0f, 2.0f, 4.0f})));
  EXPECT_TRUE(torch::equal(masters.tensors()[1].second.grad(), torch::full({2}, 1.5f)));  // widened as before
  EXPECT_FALSE(w.grad().defined());
  EXPECT_THROW(masters.use_gradients({{"w", torch::ones({3}, torch::kBFloat16)}}), UsageError);
}

}  // namespace
}  // namespace paratorch::mixed_precision
