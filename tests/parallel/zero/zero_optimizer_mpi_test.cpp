// tests/parallel/zero/zero_optimizer_mpi_test.cpp — ZeroRedundancyOptimizer:
// stages 1 and 2 with AdamW and SGD train exactly as one process (and as
// DDP + stage 1); the state_dict is the unsharded optimizer's, by name, and
// a run resumed from it at another dp size continues exactly; a loss scaler
// skips the step on every rank when one rank overflows.
#include <gtest/gtest.h>

#include "mpi_test_env.h"
#include "parallel/zero/optimizer_state.h"
#include "zero_test_models.h"
#include <paratorch/ddp.h>
#include <paratorch/errors.h>
#include <paratorch/zero.h>

using namespace paratorch;
using zero_test::Mlp;

namespace {

enum class Kind { kAdamW, kSgd };

std::unique_ptr<torch::optim::Optimizer> make_optimizer(Kind kind, std::vector<torch::Tensor> params) {
  if (kind == Kind::kAdamW)
    return std::make_unique<torch::optim::AdamW>(params, torch::optim::AdamWOptions(0.05).weight_decay(0.1));
  return std::make_unique<torch::optim::SGD>(params, torch::optim::SGDOptions(0.1).momentum(0.9));
}

Trainee reference_trainee(Kind kind) {
  auto net = zero_test::make_mlp();
  std::shared_ptr<torch::optim::Optimizer> opt = make_optimizer(kind, net->parameters());
  return plain_trainee(net.ptr(), opt, [net](const Batch& b) mutable { return zero_test::loss_of(net, b); });
}

// One ZeRO step on this rank's slice of the global batch; the mean loss.
double zero_step(Mlp& net, ZeroRedundancyOptimizer& opt, Communicator& group, const Batch& global) {
  opt.zero_grad();
  auto loss = zero_test::loss_of(net, local_slice(global, group.rank(), group.size()));
  loss.backward();
  opt.step();
  auto mean = loss.detach().clone();
  group.all_reduce(mean, ReduceOp::kAvg);
  return mean.item<double>();
}

ZeroRedundancyOptimizerOptions options(int stage) {
  ZeroRedundancyOptimizerOptions o;
  o.stage = stage;
  o.bucket_mb = 100.0 / (1024 * 1024);  // ~25 floats: several flat buffers, parameters split across them
  return o;
}

OptimizerFactory factory(Kind kind) {
  return [kind](std::vector<torch::Tensor> shards) { return make_optimizer(kind, std::move(shards)); };
}

Trainee zero_trainee(Kind kind, int stage) {
  auto net = zero_test::make_mlp();
  auto comm = test_world().comm();
  auto opt = std::make_shared<ZeroRedundancyOptimizer>(net.ptr(), comm, factory(kind), options(stage));
  return {[net, opt, comm](const Batch& b) mutable { return zero_step(net, *opt, *comm, b); },
          [net] { return named_parameter_copies(*net); }};
}

void expect_equivalent(const std::function<Trainee()>& parallel, Kind kind, const std::string& what) {
  EquivalenceOptions eq;
  eq.steps = 4;
  auto report = check_equivalence(test_world().comm(), zero_test::batch, [kind] { return reference_trainee(kind); },
                                  parallel, eq);
  if (test_world().rank() == 0) std::printf("%s\n", report.summary_line(what).c_str());
  EXPECT_TRUE(report.pass) << report.summary_line(what);
}

}  // namespace

TEST(ZeroOptimizer, Stage1AdamWEqualsOneProcess) {
  expect_equivalent([] { return zero_trainee(Kind::kAdamW, 1); }, Kind::kAdamW, "zero1-adamw");
}
TEST(ZeroOptimizer, Stage2AdamWEqualsOneProcess) {
  expect_equivalent([] { return zero_trainee(Kind::kAdamW, 2); }, Kind::kAdamW, "zero2-adamw");
}
TEST(ZeroOptimizer, Stage1SgdEqualsOneProcess) {
  expect_equivalent([] { return zero_trainee(Kind::kSgd, 1); }, Kind::kSgd, "zero1-sgd");
}
TEST(ZeroOptimizer, Stage2SgdEqualsOneProcess) {
  expect_equivalent([] { return zero_trainee(Kind::kSgd, 2); }, Kind::kSgd, "zero2-sgd");
}

namespace {

// Gradient accumulation: each rank's slice in two halves, backward under
// set_requires_gradient_sync(false) for the first; the second is synced
// (its pass reduces the total) or not (step() reduces it). Either way each
// flat buffer is reduced once per step, never in the unsynced pass, and the
// run equals one process.
Trainee accumulating_trainee(Kind kind, int stage, bool last_synced, std::shared_ptr<std::vector<int64_t>> launched) {
  auto net = zero_test::make_mlp();
  auto comm = test_world().comm();
  auto opt = std::make_shared<ZeroRedundancyOptimizer>(net.ptr(), comm, factory(kind), options(stage));
  return {[net, opt, comm, last_synced, launched](const Batch& global) mutable {
            opt->zero_grad();
            const Batch mine = local_slice(global, comm->rank(), comm->size());
            const int64_t before = opt->reductions_launched();
            double loss_sum = 0;
            for (int half = 0; half < 2; ++half) {
              opt->set_requires_gradient_sync(half == 1 && last_synced);
              const Batch part = local_slice(mine, half, 2);
              auto loss = zero_test::loss_of(net, part) / 2;
              loss.backward();
              loss_sum += loss.item<double>();
            }
            opt->set_requires_gradient_sync(true);
            launched->push_back(opt->reductions_launched() - before);  // by the backward passes
            opt->step();
            launched->push_back(opt->reductions_launched() - before);
            auto mean = torch::tensor({loss_sum}, torch::kDouble);
            comm->all_reduce(mean, ReduceOp::kAvg);
            return mean.item<double>();
          },
          [net] { return named_parameter_copies(*net); }};
}

void expect_accumulation_equivalent(int stage, bool last_synced) {
  auto launched = std::make_shared<std::vector<int64_t>>();
  expect_equivalent(
      [&] { return accumulating_trainee(Kind::kAdamW, stage, last_synced, launched); }, Kind::kAdamW,
      "zero" + std::to_string(stage) + (last_synced ? "-accumulate-synced-last" : "-accumulate-unsynced"));
  auto probe = zero_test::make_mlp();
  const auto buffers = static_cast<int64_t>(
      ZeroRedundancyOptimizer(probe.ptr(), test_world().comm(), factory(Kind::kAdamW), options(stage))
          .flat_shards()
          .size());
  ASSERT_FALSE(launched->empty());
  for (size_t i = 0; i + 1 < launched->size(); i += 2) {
    EXPECT_EQ((*launched)[i], last_synced ? buffers : 0) << "reduced during the synced backward, and only then";
    EXPECT_EQ((*launched)[i + 1], buffers) << "each flat buffer reduced once per step";
  }
}

}  // namespace

TEST(ZeroOptimizer, Stage1AccumulatesWithoutSyncAndReducesOnTheLastBackward) {
  expect_accumulation_equivalent(1, true);
}
TEST(ZeroOptimizer, Stage2AccumulatesWithoutSyncAndReducesOnTheLastBackward) {
  expect_accumulation_equivalent(2, true);
}
TEST(ZeroOptimizer, Stage1StepReducesWhatWasAccumulatedWithoutSync) { expect_accumulation_equivalent(1, false); }
TEST(ZeroOptimizer, Stage2StepReducesWhatWasAccumulatedWithoutSync) { expect_accumulation_equivalent(2, false); }

namespace {

// Over named parameters: a part of the model, as a pipeline stage holds it.
// The first Linear is left out (its gradients are never stepped); the
// reference freezes it, so the rest must train exactly as one process.
Trainee reference_without_first_layer(Kind kind) {
  auto net = zero_test::make_mlp();
  for (auto& p : net->layers[0]->parameters()) p.requires_grad_(false);
  std::shared_ptr<torch::optim::Optimizer> opt = make_optimizer(kind, net->parameters());
  return plain_trainee(net.ptr(), opt, [net](const Batch& b) mutable { return zero_test::loss_of(net, b); });
}

void expect_named_equivalent(int stage) {
  EquivalenceOptions eq;
  eq.steps = 4;
  const std::string what = "zero" + std::to_string(stage) + "-named-adamw";
  auto report = check_equivalence(
      test_world().comm(), zero_test::batch, [] { return reference_without_first_layer(Kind::kAdamW); },
      [stage] {
        auto net = zero_test::make_mlp();
        auto comm = test_world().comm();
        std::map<std::string, torch::Tensor> part;
        for (const auto& p : net->named_parameters())
          if (p.key().rfind("layers.0.", 0) != 0) part[p.key()] = p.value();
        auto opt = std::make_shared<ZeroRedundancyOptimizer>(part, comm, factory(Kind::kAdamW), options(stage));
        return Trainee{[net, opt, comm](const Batch& b) mutable { return zero_step(net, *opt, *comm, b); },
                       [net] { return named_parameter_copies(*net); }};
      },
      eq);
  if (test_world().rank() == 0) std::printf("%s\n", report.summary_line(what).c_str());
  EXPECT_TRUE(report.pass) << report.summary_line(what);
}

}  // namespace

TEST(ZeroOptimizer, Stage1OverNamedParametersEqualsOneProcess) { expect_named_equivalent(1); }
TEST(ZeroOptimizer, Stage2OverNamedParametersEqualsOneProcess) { expect_named_equivalent(2); }

TEST(ZeroOptimizer, EmptyNamedParametersNameTheArgument) {
  try {
    ZeroRedundancyOptimizer opt(std::map<std::string, torch::Tensor>{}, test_world().comm(), factory(Kind::kSgd));
    FAIL() << "an empty named_parameters was accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("named_parameters"), std::string::npos) << e.what();
  }
}

// Stage 1 behind DDP: DDP averages, the optimizer only shards.
TEST(ZeroOptimizer, Stage1UnderDdpEqualsOneProcess) {
  expect_equivalent(
      [] {
        auto net = zero_test::make_mlp();
        auto comm = test_world().comm();
        auto ddp = std::make_shared<DistributedDataParallel>(net.ptr(), comm);
        auto o = options(1);
        o.reduce_gradients = false;
        auto opt = std::make_shared<ZeroRedundancyOptimizer>(net.ptr(), comm, factory(Kind::kAdamW), o);
        return Trainee{[net, opt, ddp, comm](const Batch& b) mutable { return zero_step(net, *opt, *comm, b); },
                       [net] { return named_parameter_copies(*net); }};
      },
      Kind::kAdamW, "ddp+zero1-adamw");
}

// The saved state is exactly the unsharded optimizer's (by name), and a
// run resumed from it with dp = 1 (each rank alone) continues exactly as
// the uninterrupted one-process run.
TEST(ZeroOptimizer, StateDictByNameRoundTripsAcrossDpSizes) {
  for (Kind kind : {Kind::kAdamW, Kind::kSgd}) {
    auto world = test_world().comm();
    auto ref = zero_test::make_mlp();
    auto ref_opt = make_optimizer(kind, ref->parameters());
    auto net = zero_test::make_mlp();
    ZeroRedundancyOptimizer opt(net.ptr(), world, factory(kind), options(2));
    for (int64_t s = 0; s < 3; ++s) {
      ref_opt->zero_grad();
      zero_test::loss_of(ref, zero_test::batch(s)).backward();
      ref_opt->step();
      zero_step(net, opt, *world, zero_test::batch(s));
    }
    const auto saved = opt.state_dict();
    EXPECT_EQ(saved.at("step").item<int64_t>(), 3);
    for (const auto& item : ref->named_parameters())
      for (const auto& [kind_name, want] : zero::read_state(*ref_opt, item.value())) {
        SCOPED_TRACE(item.key() + "." + kind_name);
        const auto& got = saved.at(item.key() + "." + kind_name);
        ASSERT_EQ(got.sizes(), want.sizes());
        EXPECT_TRUE(torch::allclose(got, want, 1e-5, 1e-7));
      }
    // Resume alone (dp = 1) from the parameters and the saved state.
    auto alone = world->split(world->rank(), 0, "alone");
    auto resumed = zero_test::make_mlp();
    {
      torch::NoGradGuard no_grad;
      auto full = named_parameter_copies(*net);
      for (auto& item : resumed->named_parameters()) item.value().copy_(full.at(item.key()));
    }
    ZeroRedundancyOptimizer again(resumed.ptr(), alone, factory(kind), options(1));
    again.load_state_dict(saved);
    for (int64_t s = 3; s < 5; ++s) {
      ref_opt->zero_grad();
      zero_test::loss_of(ref, zero_test::batch(s)).backward();
      ref_opt->step();
      zero_step(resumed, again, *alone, zero_test::batch(s));
    }
    auto want = named_parameter_copies(*ref);
    for (const auto& [name, got] : named_parameter_copies(*resumed)) {
      SCOPED_TRACE(name);
      EXPECT_LT((got - want.at(name)).norm().item<double>() / want.at(name).norm().item<double>(), 1e-5);
    }
  }
}

// And the other way: state saved by one process loads into the dp group.
TEST(ZeroOptimizer, StateDictFromOneProcessLoadsIntoTheGroup) {
  auto world = test_world().comm();
  auto alone = world->split(world->rank(), 0, "alone");
  auto net = zero_test::make_mlp();
  ZeroRedundancyOptimizer single(net.ptr(), alone, factory(Kind::kAdamW), options(1));
  zero_step(net, single, *alone, zero_test::batch(0));
  auto copy = zero_test::make_mlp();
  {
    torch::NoGradGuard no_grad;
    auto full = named_parameter_copies(*net);
    for (auto& item : copy->named_parameters()) item.value().copy_(full.at(item.key()));
  }
  ZeroRedundancyOptimizer sharded(copy.ptr(), world, factory(Kind::kAdamW), options(2));
  sharded.load_state_dict(single.state_dict());
  zero_step(net, single, *alone, zero_test::batch(1));
  zero_step(copy, sharded, *world, zero_test::batch(1));
  auto want = named_parameter_copies(*net);
  for (const auto& [name, got] : named_parameter_copies(*copy))
    EXPECT_TRUE(torch::allclose(got, want.at(name), 1e-5, 1e-6)) << name;
  auto missing = single.state_dict();
  missing.erase("layers.0.weight.exp_avg");
  try {
    sharded.load_state_dict(missing);
    ADD_FAILURE() << "no error for a missing tensor";
  } catch (const RuntimeFailure& e) {
    EXPECT_NE(std::string(e.what()).find("no tensor 'layers.0.weight.exp_avg'"), std::string::npos) << e.what();
  }
}

// bf16 compute on a group of one rank: the master is the whole buffer, and
// after every step each bf16 parameter is exactly its fp32 master rounded
// (no all-gather runs, so only the copy at publication puts it there). The
// buffers follow plan_buckets, parameters back to back in bucket order.
TEST(ZeroOptimizer, Bf16ParametersAreTheirMastersRoundedOnOneRank) {
  auto alone = test_world().comm()->split(test_world().rank(), 0, "alone");
  auto net = zero_test::make_mlp();
  const auto initial = named_parameter_copies(*net);
  auto o = options(1);
  o.mixed_precision.param_dtype = torch::kBFloat16;
  ZeroRedundancyOptimizer opt(net.ptr(), alone, factory(Kind::kAdamW), o);
  for (int64_t s = 0; s < 3; ++s) {
    opt.zero_grad();
    const auto b = zero_test::batch(s);
    torch::mse_loss(net->forward(b.input.to(torch::kBFloat16)).to(torch::kFloat), b.target).backward();
    opt.step();
  }
  const auto params = net->parameters();
  const auto shards = opt.flat_shards();
  const auto plan = plan_buckets(params, static_cast<int64_t>(o.bucket_mb * 1024 * 1024), torch::kFloat);
  ASSERT_EQ(plan.size(), shards.size());
  for (size_t b = 0; b < plan.size(); ++b) {
    int64_t offset = 0;
    for (size_t i : plan[b].params) {
      const auto& p = params[i];
      ASSERT_EQ(p.scalar_type(), torch::kBFloat16);
      const auto master = shards[b].detach().narrow(0, offset, p.numel()).view(p.sizes());
      EXPECT_TRUE(torch::equal(p.detach(), master.to(torch::kBFloat16))) << "buffer " << b << " parameter " << i;
      offset += p.numel();
    }
  }
  double moved = 0;
  for (const auto& [name, p] : named_parameter_copies(*net)) moved += (p - initial.at(name)).abs().max().item<double>();
  EXPECT_GT(moved, 0.1);  // the steps did move the model
}

// An inf in one gradient element on one rank only: under stage 2 only the
// rank whose shard holds that element sees it, yet every rank skips the
// step (parameters and optimizer state unchanged) and the scale backs off.
TEST(ZeroOptimizer, LossScalerSkipsOnEveryRankWhenOneOverflows) {
  auto world = test_world().comm();
  auto net = zero_test::make_mlp();
  auto bias = net->layers[4]->named_parameters()["bias"];
  ZeroRedundancyOptimizer opt(net.ptr(), world, factory(Kind::kAdamW), options(2));
  LossScaler scaler;
  const auto before = named_parameter_copies(*net);
  bool poison = true;
  bias.register_hook([&poison, rank = world->rank()](torch::Tensor g) {
    if (!poison || rank != 0) return g;
    g = g.clone();
    g[0] = std::numeric_limits<float>::infinity();
    return g;
  });
  opt.zero_grad();
  scaler.scale(zero_test::loss_of(net, local_slice(zero_test::batch(0), world->rank(), world->size()))).backward();
  EXPECT_FALSE(opt.step(&scaler));
  scaler.update();
  EXPECT_EQ(scaler.scale(), 32768.0);
  for (const auto& [name, p] : named_parameter_copies(*net)) EXPECT_TRUE(torch::equal(p, before.at(name))) << name;
  EXPECT_EQ(opt.state_dict().at("step").item<int64_t>(), 0);
  // A clean step goes through.
  poison = false;
  opt.zero_grad();
  scaler.scale(zero_test::loss_of(net, local_slice(zero_test::batch(0), world->rank(), world->size()))).backward();
  EXPECT_TRUE(opt.step(&scaler));
  scaler.update();
  EXPECT_EQ(opt.state_dict().at("step").item<int64_t>(), 1);
}

TEST(ZeroOptimizer, BadOptionsNameTheField) {
  auto net = zero_test::make_mlp();
  auto o = options(3);
  try {
    ZeroRedundancyOptimizer opt(net.ptr(), test_world().comm(), factory(Kind::kSgd), o);
    ADD_FAILURE() << "stage 3 accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("ZeroRedundancyOptimizerOptions::stage = 3"), std::string::npos);
  }
}

TEST(ZeroOptimizer, NegativeMaxGradNormNamesTheField) {
  auto net = zero_test::make_mlp();
  auto o = options(1);
  o.max_grad_norm = -1;
  try {
    ZeroRedundancyOptimizer opt(net.ptr(), test_world().comm(), factory(Kind::kSgd), o);
    ADD_FAILURE() << "max_grad_norm = -1 accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("ZeroRedundancyOptimizerOptions::max_grad_norm = -1"), std::string::npos)
        << e.what();
  }
}

// max_grad_norm clips by the whole model's norm, the shards' squares summed
// over dp: the norm one process measures, and with a clip that binds every
// step (SGD: a clip off by any factor changes the update) the same training
// as torch::nn::utils::clip_grad_norm_ in one process, at stages 1 and 2.
namespace {

constexpr double kClipMaxNorm = 0.05;

Trainee clipped_reference() {
  auto net = zero_test::make_mlp();
  std::shared_ptr<torch::optim::Optimizer> opt = make_optimizer(Kind::kSgd, net->parameters());
  return {[net, opt](const Batch& b) mutable {
            opt->zero_grad();
            auto loss = zero_test::loss_of(net, b);
            loss.backward();
            EXPECT_GT(torch::nn::utils::clip_grad_norm_(net->parameters(), kClipMaxNorm), kClipMaxNorm)
                << "the clip binds";
            opt->step();
            return loss.item<double>();
          },
          [net] { return named_parameter_copies(*net); }};
}

void expect_clipped_equivalent(int stage) {
  EquivalenceOptions eq;
  eq.steps = 4;
  auto parallel = [stage] {
    auto net = zero_test::make_mlp();
    auto comm = test_world().comm();
    auto o = options(stage);
    o.max_grad_norm = kClipMaxNorm;
    auto opt = std::make_shared<ZeroRedundancyOptimizer>(net.ptr(), comm, factory(Kind::kSgd), o);
    return Trainee{[net, opt, comm](const Batch& b) mutable { return zero_step(net, *opt, *comm, b); },
                   [net] { return named_parameter_copies(*net); }};
  };
  auto report = check_equivalence(test_world().comm(), zero_test::batch, clipped_reference, parallel, eq);
  const std::string what = "zero" + std::to_string(stage) + "-sgd-clip";
  if (test_world().rank() == 0) std::printf("%s\n", report.summary_line(what).c_str());
  EXPECT_TRUE(report.pass) << report.summary_line(what);
}

}  // namespace

TEST(ZeroOptimizer, MaxGradNormMeasuresTheWholeModelsNorm) {
  auto reference = zero_test::make_mlp(), net = zero_test::make_mlp();
  auto comm = test_world().comm();
  auto o = options(2);
  o.max_grad_norm = 1e9;  // measures, does not bind
  ZeroRedundancyOptimizer opt(net.ptr(), comm, factory(Kind::kSgd), o);
  EXPECT_EQ(opt.last_grad_norm(), -1);
  const auto b = zero_test::batch(0);
  zero_test::loss_of(reference, b).backward();
  const double want = torch::nn::utils::clip_grad_norm_(reference->parameters(), 1e9);
  opt.zero_grad();
  zero_test::loss_of(net, local_slice(b, comm->rank(), comm->size())).backward();
  opt.step();
  EXPECT_NEAR(opt.last_grad_norm(), want, 1e-5 * want);
}

TEST(ZeroOptimizer, Stage1BindingClipEqualsOneProcess) { expect_clipped_equivalent(1); }
TEST(ZeroOptimizer, Stage2BindingClipEqualsOneProcess) { expect_clipped_equivalent(2); }

TEST(ZeroOptimizer, ClipTiedCopiesNamingNoParameterIsRefused) {
  auto net = zero_test::make_mlp();
  auto o = options(1);
  o.max_grad_norm = 1.0;
  o.clip_tied_copies = {"layers.9.weight"};
  try {
    ZeroRedundancyOptimizer opt(net.ptr(), test_world().comm(), factory(Kind::kSgd), o);
    ADD_FAILURE() << "an unknown name accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("ZeroRedundancyOptimizerOptions::clip_tied_copies names 'layers.9.weight'"),
              std::string::npos)
        << e.what();
  }
}
