// tests/parallel/async/ps_engine_test.cpp — the bulk-synchronous parameter server
// (staleness 0) is synchronous SGD: through make_engine, its per-step losses,
// pre-clip global gradient norms and final parameters equal a single-process
// run on the same global batches (what `paratorch verify --mode ps` checks;
// here without the CLI), stepped by train::take_step.
//
// Two kinds of case. With a clip that binds (pre-clip norm ~2 vs clip 0.5)
// the servers' global norm must be the whole model's, but the update no
// longer sees the gradient's scale: a server that SUMMED the W pushes
// instead of averaging them would be clipped back to the same step. So every
// case also compares the pre-clip norm per step, and the scale-sensitive
// cases train with SGD (momentum: the update is linear in the gradient), no
// clip and no weight decay, where a wrong scale changes the norm at step 1
// and every update after it.
#include "parallel/async/ps_engine.h"
#include "data/dataset.h"
#include "train/engine_factory.h"
#include "optim/lr_schedule.h"
#include "train/train_step.h"
#include "parallel/grad_clip.h"

#include "mpi_test_env.h"

#include <gtest/gtest.h>
#include <paratorch/errors.h>
#include <paratorch/sampler.h>

namespace paratorch::async {
namespace {

train::Config small_config(const std::string& model, const std::string& optimizer) {
  train::Config c;
  c.model.name = model;
  c.model.n_layers = 1;
  c.model.d_model = 16;
  c.model.d_in = 12;
  c.model.n_users = 40;
  c.model.n_items = 30;
  c.model.n_factors = 4;
  c.data.source = model == "mf" ? "mf_synthetic" : "synthetic";
  c.data.global_batch = 12;  // divides over 1, 2 and 3 workers
  c.parallel.mode = "ps";
  c.optim.name = optimizer;
  c.optim.lr = 0.05;
  c.optim.weight_decay = 0.01;
  c.optim.warmup_steps = 1;
  c.optim.grad_clip = 0.5;  // binds: the servers' global norm must be the whole model's
  c.train.steps = 4;
  c.validate();
  return c;
}

double max_rel(const torch::Tensor& a, const torch::Tensor& b) {
  return ((a - b).abs().max() / (b.abs().max() + 1e-12)).item<double>();
}

struct Case {
  std::string model, optimizer;
  int servers = 1;
  bool scale_sensitive = false;  // SGD, no clip, no weight decay: the update is linear in the gradient
};

void expect_bsp_equals_reference(const Case& c) {
  auto& world = test_world();
  auto config = small_config(c.model, c.optimizer);
  config.parallel.servers = c.servers;
  if (c.scale_sensitive) {
    ASSERT_EQ(c.optimizer, "sgd");
    config.optim.grad_clip = 0;  // 0: take_step only measures the norm
    config.optim.weight_decay = 0;
    config.optim.lr = 0.2;  // large enough that a wrong scale moves the losses after step 1 by far more than 1e-5
  }
  const int workers = world.size() - c.servers;
  ProcessGroups groups(world.comm(), Layout{0, 1, 1}.resolve(world.size()));
  auto dataset = data::make_dataset(config.data.source, config.model, static_cast<uint64_t>(config.train.seed));
  auto engine = train::make_engine(config, groups, models::make_model(config.model), *dataset, world.device());
  const auto shard = engine->named_parameters();
  EXPECT_EQ(shard.empty(), world.rank() >= c.servers) << "servers own the parameters the optimizer steps";
  auto optimizer = optim::make_optimizer(config.optim, shard);

  auto reference = models::make_model(config.model);
  reference->initialize(static_cast<uint64_t>(config.train.seed));
  optim::NamedTensors named;
  std::map<std::string, torch::Tensor> initial;
  for (const auto& item : reference->named_parameters(true)) {
    named.emplace_back(item.key(), item.value());
    initial[item.key()] = item.value().detach().clone();
  }
  auto optimizer_ref = optim::make_optimizer(config.optim, named);
  optim::LrSchedule schedule{config.optim.lr, config.optim.warmup_steps, config.train.steps};
  DistributedSampler batches(config.data.global_batch, 0, 1);
  int clipped = 0;
  for (int s = 0; s < config.train.steps; ++s) {
    const auto got = train::take_step(*engine, *optimizer,
                                      parallel::local_microbatches(*engine, *dataset, batches.global_indices(s)),
                                      schedule.at(s), config.optim.grad_clip, s + 1);
    optim::zero_gradients(named);
    auto l = reference->loss(dataset->train_batch(batches.global_indices(s)));
    l.backward();
    std::vector<torch::Tensor> tensors;
    for (auto& [name, p] : named) tensors.push_back(p);
    const double norm = parallel::clip_grad_norm(tensors, config.optim.grad_clip);
    optimizer_ref->step(schedule.at(s));
    clipped += config.optim.grad_clip > 0 && norm > config.optim.grad_clip ? 1 : 0;
    EXPECT_NEAR(got.loss, l.item<double>(), 1e-5 * std::abs(l.item<double>())) << "step " << s;
    EXPECT_NEAR(got.grad_norm, norm, 1e-5 * norm) << "pre-clip global gradient norm, step " << s << " ("
                                                  << workers << " workers: a sum of the pushes would be "
                                                  << workers << "x the mean)";
  }
  // The binding-clip cases test the servers' global clip; say so if it stopped binding.
  if (!c.scale_sensitive) EXPECT_EQ(clipped, config.train.steps) << "the clip of " << config.optim.grad_clip << " should bind";
  auto full = engine->full_parameters();
  for (const auto& [name, p] : named) {
    EXPECT_LT(max_rel(full.at(name), p.detach()), 1e-5) << name;
    // A run that does not train (or trains far too little) must not pass: the
    // parameters moved by much more than the tolerance.
    if (c.scale_sensitive) EXPECT_GT(max_rel(p.detach(), initial.at(name)), 1e-3) << name << " barely moved";
  }
}

TEST(PsEngine, BulkSynchronousMlpSgdEqualsSingleProcess) { expect_bsp_equals_reference({"mlp", "sgd", 1}); }
TEST(PsEngine, BulkSynchronousMfAdamwEqualsSingleProcess) { expect_bsp_equals_reference({"mf", "adamw", 1}); }
TEST(PsEngine, TwoServersSplitTheModel) {
  if (test_world().size() < 3) GTEST_SKIP() << "needs 2 servers + a worker";
  expect_bsp_equals_reference({"mlp", "adamw", 2});
}

// Scale-sensitive: plain (momentum) SGD, no clip, no weight decay, so the
// update is linear in the averaged gradient and a server that sums the W
// pushes (or a worker that pushes a scaled gradient) fails at 1e-5.
TEST(PsEngine, OneServerUnclippedSgdKeepsTheGradientScale) {
  expect_bsp_equals_reference({"mlp", "sgd", 1, true});
  expect_bsp_equals_reference({"mf", "sgd", 1, true});
}
TEST(PsEngine, TwoServersUnclippedSgdKeepTheGradientScale) {
  if (test_world().size() < 3) GTEST_SKIP() << "needs 2 servers + a worker";
  // With one worker (np3) a sum equals the mean; np4 (2 workers) is the
  // scale-sensitive launch.
  expect_bsp_equals_reference({"mlp", "sgd", 2, true});
  expect_bsp_equals_reference({"mf", "sgd", 2, true});
}

TEST(PsEngine, StaleStepsAreRefusedAsAnEngine) {
  auto& world = test_world();
  auto config = small_config("mlp", "sgd");
  config.parallel.staleness = 2;
  ProcessGroups groups(world.comm(), Layout{0, 1, 1}.resolve(world.size()));
  auto dataset = data::make_dataset(config.data.source, config.model, 1);
  EXPECT_THROW(train::make_engine(config, groups, models::make_model(config.model), *dataset, world.device()),
               UsageError);
}

}  // namespace
}  // namespace paratorch::async
