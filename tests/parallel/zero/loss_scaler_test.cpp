// tests/parallel/zero/loss_scaler_test.cpp — LossScaler follows GradScaler:
// a non-finite gradient skips the step and backs the scale off, growth
// after growth_interval clean steps, step() unscales, state round-trips;
// MixedPrecisionPolicy and LossScalerOptions name their bad fields.
#include <gtest/gtest.h>

#include <paratorch/errors.h>
#include <paratorch/mixed_precision.h>

#include <limits>

using namespace paratorch;

namespace {

struct Fixture {
  torch::Tensor w = torch::ones({3}).requires_grad_(true);
  torch::optim::SGD opt{{w}, torch::optim::SGDOptions(1.0)};
  void backward(LossScaler& scaler, float factor) {
    opt.zero_grad();
    scaler.scale((w * factor).sum()).backward();
  }
};

}  // namespace

TEST(LossScaler, SkipsOnInfAndBacksOff) {
  LossScalerOptions o;
  o.initial_scale = 8;
  LossScaler scaler(o);
  Fixture f;
  f.backward(scaler, std::numeric_limits<float>::infinity());
  EXPECT_FALSE(scaler.step(f.opt));
  scaler.update();
  EXPECT_EQ(scaler.scale(), 4.0);
  EXPECT_EQ(scaler.skipped_steps(), 1);
  EXPECT_TRUE(torch::equal(f.w.detach(), torch::ones({3})));  // not stepped
  f.backward(scaler, std::numeric_limits<float>::quiet_NaN());
  EXPECT_FALSE(scaler.step(f.opt));
  scaler.update();
  EXPECT_EQ(scaler.scale(), 2.0);
}

TEST(LossScaler, StepUnscalesAndGrowsAfterTheInterval) {
  LossScalerOptions o;
  o.initial_scale = 8;
  o.growth_interval = 3;
  LossScaler scaler(o);
  Fixture f;
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(scaler.scale(), 8.0) << "grew before growth_interval clean steps";
    f.backward(scaler, 0.5f);
    EXPECT_TRUE(scaler.step(f.opt));
    scaler.update();
  }
  EXPECT_EQ(scaler.scale(), 16.0);
  // Gradient 0.5 per element, unscaled: w = 1 - 3 * 0.5.
  EXPECT_TRUE(torch::allclose(f.w.detach(), torch::full({3}, -0.5)));
  // An overflow resets the run of clean steps.
  f.backward(scaler, std::numeric_limits<float>::infinity());
  scaler.step(f.opt);
  scaler.update();
  f.backward(scaler, 0.5f);
  scaler.step(f.opt);
  scaler.update();
  EXPECT_EQ(scaler.scale(), 8.0);
}

TEST(LossScaler, StateRoundTrips) {
  LossScalerOptions o;
  o.growth_interval = 5;
  LossScaler a(o);
  a.update(true);
  a.update(false);
  LossScaler b(o);
  b.load_state(a.state());
  EXPECT_EQ(b.scale(), a.scale());
  EXPECT_EQ(b.skipped_steps(), 1);
  for (int i = 0; i < 4; ++i) b.update(false);  // 1 + 4 clean steps: grows
  EXPECT_EQ(b.scale(), a.scale() * 2);
  LossScaler c(o);
  c.load_state({});  // an fp32 checkpoint: unchanged
  EXPECT_EQ(c.scale(), 65536.0);
}

TEST(LossScaler, BadOptionsNameTheField) {
  LossScalerOptions o;
  o.backoff_factor = 1.5;
  try {
    LossScaler s(o);
    ADD_FAILURE();
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("LossScalerOptions::backoff_factor"), std::string::npos) << e.what();
  }
  MixedPrecisionPolicy p;
  p.reduce_dtype = torch::kInt;
  try {
    p.validate();
    ADD_FAILURE();
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("MixedPrecisionPolicy::reduce_dtype"), std::string::npos) << e.what();
  }
}

TEST(MasterWeights, StepsInFp32AndRoundsIntoTheModel) {
  auto lin = std::make_shared<torch::nn::LinearImpl>(2, 1);
  torch::nn::init::constant_(lin->weight, 1.0);
  MasterWeights masters(lin, torch::kBFloat16);
  EXPECT_EQ(lin->weight.scalar_type(), torch::kBFloat16);
  torch::optim::SGD opt(masters.parameters(), torch::optim::SGDOptions(1e-3));
  lin->forward(torch::ones({1, 2}, torch::kBFloat16)).sum().backward();
  masters.widen_gradients();
  opt.step();
  masters.copy_to_model();
  // 1 - 1e-3 is below bf16's resolution at 1: the model still reads 1, the master moved.
  EXPECT_FLOAT_EQ(masters.named_parameters()[0].second[0][0].item<float>(), 0.999f);
  EXPECT_EQ(lin->weight[0][0].item<float>(), 1.0f);
}
