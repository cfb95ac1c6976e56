// tests/optim/optimizer_test.cpp — paratorch's AdamW and SGD follow PyTorch's
// update rules exactly, and their state survives a save/load by name.
#include "optim/optimizer.h"

#include <paratorch/errors.h>

#include <gtest/gtest.h>

namespace paratorch::train {
namespace {

optim::NamedTensors fresh_params(uint64_t seed) {
  torch::manual_seed(static_cast<int64_t>(seed));
  return {{"w", torch::randn({5, 3}).requires_grad_()}, {"b", torch::randn({3}).requires_grad_()}};
}

void set_grads(const optim::NamedTensors& params, int step) {
  torch::manual_seed(100 + step);
  for (const auto& [name, p] : params) p.mutable_grad() = torch::randn_like(p);
}

std::vector<torch::Tensor> tensors_of(const optim::NamedTensors& params) {
  std::vector<torch::Tensor> out;
  for (const auto& [name, p] : params) out.push_back(p);
  return out;
}

TEST(Optimizer, AdamWWithoutDecayMatchesTorch) {
  auto ours = fresh_params(1), theirs = fresh_params(1);
  optim::OptimizerOptions o;
  o.weight_decay = 0;
  auto opt = optim::make_optimizer(o, ours);
  torch::optim::AdamW ref(tensors_of(theirs), torch::optim::AdamWOptions(1e-2).weight_decay(0));
  for (int s = 0; s < 5; ++s) {
    set_grads(ours, s);
    set_grads(theirs, s);
    opt->step(1e-2);
    ref.step();
  }
  // The fused fp32 kernel rounds its scalars once; torch keeps them in double.
  for (size_t i = 0; i < ours.size(); ++i)
    EXPECT_LT((ours[i].second - theirs[i].second).abs().max().item<double>(), 2e-6) << ours[i].first;
  EXPECT_EQ(opt->steps_taken(), 5);
}

TEST(Optimizer, AdamWDecaysMatricesOnly) {
  auto ours = fresh_params(2);
  const auto bias_before = ours[1].second.detach().clone();
  optim::OptimizerOptions o;
  o.weight_decay = 0.5;
  auto opt = optim::make_optimizer(o, ours);
  // With zero gradients only weight decay moves a parameter.
  for (const auto& [name, p] : ours) p.mutable_grad() = torch::zeros_like(p);
  const auto w_before = ours[0].second.detach().clone();
  opt->step(0.1);
  EXPECT_TRUE(torch::allclose(ours[0].second, w_before * (1 - 0.1 * 0.5)));
  EXPECT_TRUE(torch::equal(ours[1].second, bias_before));
}

TEST(Optimizer, SgdMatchesTorchMomentum) {
  auto ours = fresh_params(3), theirs = fresh_params(3);
  optim::OptimizerOptions o;
  o.kind = optim::OptimizerKind::kSgd;
  o.weight_decay = 0;
  auto opt = optim::make_optimizer(o, ours);
  torch::optim::SGD ref(tensors_of(theirs), torch::optim::SGDOptions(0.05).momentum(0.9));
  for (int s = 0; s < 4; ++s) {
    set_grads(ours, s);
    set_grads(theirs, s);
    opt->step(0.05);
    ref.step();
  }
  for (size_t i = 0; i < ours.size(); ++i) EXPECT_TRUE(torch::allclose(ours[i].second, theirs[i].second, 1e-6, 1e-7));
}

TEST(Optimizer, StateRoundTripContinuesIdentically) {
  for (const auto kind : {optim::OptimizerKind::kAdamW, optim::OptimizerKind::kSgd}) {
    const std::string name = optim::optimizer_kind_name(kind);
    SCOPED_TRACE(name);
    optim::OptimizerOptions o;
    o.kind = kind;
    auto a = fresh_params(4);
    auto opt_a = optim::make_optimizer(o, a);
    for (int s = 0; s < 3; ++s) set_grads(a, s), opt_a->step(1e-2);
    // A second optimizer over a copy of the parameters, restored from state.
    optim::NamedTensors b;
    for (const auto& [n, p] : a) b.emplace_back(n, p.detach().clone().requires_grad_());
    auto opt_b = optim::make_optimizer(o, b);
    std::map<std::string, torch::Tensor> saved;
    for (const auto& [k, v] : opt_a->state_tensors()) saved[k] = v.clone();
    opt_b->load_state_tensors(saved);
    EXPECT_EQ(opt_b->steps_taken(), 3);
    for (int s = 3; s < 6; ++s) set_grads(a, s), set_grads(b, s), opt_a->step(1e-2), opt_b->step(1e-2);
    for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i].second, b[i].second));
  }
}

// The clip is folded into the update (train_step.cpp): step(lr, s) must be
// bit-identical to scaling every gradient by s first, for the fused fp32
// AdamW kernel, AdamW's torch path (a non-contiguous parameter) and SGD.
TEST(Optimizer, GradScaleEqualsScalingTheGradientsFirst) {
  for (const auto kind : {optim::OptimizerKind::kAdamW, optim::OptimizerKind::kSgd}) {
    const std::string name = optim::optimizer_kind_name(kind);
    for (const bool strided : {false, true}) {
      SCOPED_TRACE(name + (strided ? " strided" : " contiguous"));
      optim::OptimizerOptions o;
      o.kind = kind;
      auto make = [&] {
        auto params = fresh_params(6);
        if (strided) params[0].second = params[0].second.detach().t().requires_grad_();  // not contiguous
        return params;
      };
      auto folded = make(), scaled_first = make();
      auto opt_folded = optim::make_optimizer(o, folded), opt_first = optim::make_optimizer(o, scaled_first);
      for (int s = 0; s < 3; ++s) {
        set_grads(folded, s);
        set_grads(scaled_first, s);
        const double scale = 0.37 + 0.1 * s;
        for (const auto& [n, p] : scaled_first) p.mutable_grad().mul_(scale);
        opt_folded->step(1e-2, scale);
        opt_first->step(1e-2);
      }
      for (size_t i = 0; i < folded.size(); ++i) {
        EXPECT_TRUE(torch::equal(folded[i].second, scaled_first[i].second)) << folded[i].first;
        // and the step moved them: a scale of 0 or an ignored step would not
        EXPECT_FALSE(torch::equal(folded[i].second, make()[i].second)) << folded[i].first;
      }
    }
  }
}

TEST(Optimizer, LoadRefusesMissingOrMisshapenState) {
  optim::OptimizerOptions o;
  auto params = fresh_params(5);
  auto opt = optim::make_optimizer(o, params);
  auto state = opt->state_tensors();
  state.erase("w.exp_avg");
  EXPECT_THROW(opt->load_state_tensors(state), RuntimeFailure);
  state = opt->state_tensors();
  state["b.exp_avg_sq"] = torch::zeros({4});
  try {
    opt->load_state_tensors(state);
    FAIL() << "accepted a mis-shaped state tensor";
  } catch (const RuntimeFailure& e) {
    EXPECT_NE(std::string(e.what()).find("b.exp_avg_sq"), std::string::npos) << e.what();
  }
}

// Options are checked where the library takes them, naming the field.
TEST(Optimizer, OptionsRefuseNegativeWeightDecay) {
  optim::OptimizerOptions o;
  o.weight_decay = -0.1;
  auto params = fresh_params(7);
  try {
    optim::make_optimizer(o, params);
    FAIL() << "a negative weight decay was accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("OptimizerOptions::weight_decay"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace paratorch::train
