// tests/parallel/zero/fully_shard_mpi_test.cpp — fully_shard trains exactly
// as one process (with and without prefetch and resharding, and units
// named inside a nested Sequential); its reduce-scatters go through the
// comm hook; each rank holds only its shards; a weight tied across two
// units is sharded once and trained as one process trains it; bad
// unit lists are refused naming FullyShardOptions::units.
#include <gtest/gtest.h>

#include "mpi_test_env.h"
#include "zero_test_models.h"
#include <paratorch/errors.h>
#include <paratorch/grad_clip.h>
#include <paratorch/zero.h>

#include <algorithm>

using namespace paratorch;
using zero_test::Mlp;

namespace {

// AdamW alone would hide a gradient off by a constant factor (its update
// is scale-invariant): the SGD runs catch those.
using MakeOptimizer = std::function<std::shared_ptr<torch::optim::Optimizer>(std::vector<torch::Tensor>)>;

std::shared_ptr<torch::optim::Optimizer> adamw(std::vector<torch::Tensor> params) {
  return std::make_shared<torch::optim::AdamW>(params, torch::optim::AdamWOptions(0.05).weight_decay(0.1));
}

std::shared_ptr<torch::optim::Optimizer> sgd(std::vector<torch::Tensor> params) {
  return std::make_shared<torch::optim::SGD>(params, torch::optim::SGDOptions(0.1).momentum(0.9));
}

// One step of a fully sharded model: each rank trains on its slice, and the
// step's loss is the mean over the group (the global batch's).
std::function<double(const Batch&)> sharded_step(std::shared_ptr<torch::optim::Optimizer> opt,
                                                 std::function<torch::Tensor(const Batch&)> loss_of) {
  auto comm = test_world().comm();
  return [opt, comm, loss_of](const Batch& b) {
    opt->zero_grad();
    auto loss = loss_of(local_slice(b, comm->rank(), comm->size()));
    loss.backward();
    opt->step();
    auto mean = loss.detach().clone();
    comm->all_reduce(mean, ReduceOp::kAvg);
    return mean.item<double>();
  };
}

Trainee fsdp_trainee(FullyShardOptions options, const MakeOptimizer& make_optimizer) {
  auto net = zero_test::make_mlp();
  auto sharded = std::make_shared<FullyShardedModule>(fully_shard(net.ptr(), test_world().comm(), options));
  return {sharded_step(make_optimizer(sharded->parameters()),
                       [net](const Batch& b) mutable { return zero_test::loss_of(net, b); }),
          [sharded] { return sharded->full_parameters(); }};
}

void expect_equivalent(FullyShardOptions options, const std::string& what, MakeOptimizer make_optimizer = adamw) {
  EquivalenceOptions eq;
  eq.steps = 4;
  auto reference = [make_optimizer] {
    auto net = zero_test::make_mlp();
    return plain_trainee(net.ptr(), make_optimizer(net->parameters()),
                         [net](const Batch& b) mutable { return zero_test::loss_of(net, b); });
  };
  auto report = check_equivalence(test_world().comm(), zero_test::batch, reference,
                                  [options, make_optimizer] { return fsdp_trainee(options, make_optimizer); }, eq);
  if (test_world().rank() == 0) std::printf("%s\n", report.summary_line(what).c_str());
  EXPECT_TRUE(report.pass) << report.summary_line(what);
}

FullyShardOptions layer_units() {
  FullyShardOptions o;
  o.units = {"layers.0", "layers.1", "layers.2", "layers.3", "layers.4"};
  return o;
}

std::string usage_error_of(const std::vector<std::string>& units) {
  auto net = zero_test::make_mlp();
  FullyShardOptions o;
  o.units = units;
  try {
    fully_shard(net.ptr(), test_world().comm(), o);
  } catch (const UsageError& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST(FullyShard, EqualsOneProcess) {
  expect_equivalent(layer_units(), "fsdp-adamw");
  expect_equivalent(layer_units(), "fsdp-sgd", sgd);
}

TEST(FullyShard, WithoutPrefetchOrResharding) {
  auto o = layer_units();
  o.prefetch = false;
  o.reshard_after_forward = false;
  expect_equivalent(o, "fsdp-no-prefetch-no-reshard");
}

// The units' reduce-scatters go through the comm hook, one bucket per unit
// and backward, as reduce-scatter buckets, and have all finished (in the
// shards' .grad) when backward returns. A bf16 hook stays near the default.
TEST(FullyShard, ReduceScattersGoThroughTheCommHook) {
  auto comm = test_world().comm();
  auto grads_with = [&](CommHook hook, int* calls) {
    auto net = zero_test::make_mlp();
    auto sharded = fully_shard(net.ptr(), comm, layer_units());
    if (hook)
      sharded.register_comm_hook([hook, calls](Communicator& c, GradBucket& bucket) {
        EXPECT_TRUE(bucket.shard.defined()) << "a reduce-scatter bucket";
        EXPECT_EQ(bucket.divisor, c.size());
        ++*calls;
        return hook(c, bucket);
      });
    auto batch = zero_test::batch(0);
    zero_test::loss_of(net, local_slice(batch, comm->rank(), comm->size())).backward();
    std::vector<torch::Tensor> out;
    for (const auto& shard : sharded.parameters()) {
      EXPECT_TRUE(shard.grad().defined()) << "every unit's gradient is in its shard when backward returns";
      out.push_back(shard.grad().defined() ? shard.grad().clone() : torch::zeros_like(shard));
    }
    return out;
  };
  int calls = 0;
  const auto plain = grads_with(nullptr, nullptr);
  const auto hooked = grads_with(comm_hooks::allreduce(), &calls);
  EXPECT_EQ(calls, 3) << "one reduce-scatter per unit with parameters (the 3 Linears, not the 2 ReLUs)";
  int bf16_calls = 0;
  const auto bf16 = grads_with(comm_hooks::bf16_compress(), &bf16_calls);
  ASSERT_EQ(plain.size(), hooked.size());
  for (size_t u = 0; u < plain.size(); ++u) {
    EXPECT_TRUE(torch::equal(plain[u], hooked[u])) << "unit " << u;
    EXPECT_TRUE(torch::allclose(bf16[u], plain[u], 2e-2, 1e-3)) << "unit " << u;
  }
  EXPECT_THROW(fully_shard(zero_test::make_mlp().ptr(), comm, layer_units()).register_comm_hook(nullptr), UsageError);
}

// The module itself a Sequential: the default units are its children.
TEST(FullyShard, DefaultUnitsAreTheChildren) {
  auto net = zero_test::make_mlp();
  auto seq = net->layers;
  auto sharded = fully_shard(seq.ptr(), test_world().comm());
  EXPECT_EQ(sharded.units().size(), 5u);
  EXPECT_EQ(sharded.unit("2")->name(), "2");
  // Only shards are left: 1/N of each unit (padded), nothing else.
  int64_t held = 0;
  for (const auto& p : seq->parameters()) held += p.numel();
  const int n = test_world().size();
  EXPECT_EQ(held, (6 * 7 + 7 + n - 1) / n + (7 * 5 + 5 + n - 1) / n + (5 * 3 + 3 + n - 1) / n);
  auto y = seq->forward(torch::ones({2, 6}));
  EXPECT_EQ(y.sizes(), torch::IntArrayRef({2, 3}));
  auto full = sharded.full_parameters();
  EXPECT_EQ(full.at("0.weight").sizes(), torch::IntArrayRef({7, 6}));
  EXPECT_TRUE(torch::equal(full.at("4.bias"), zero_test::make_mlp()->layers[4]->named_parameters()["bias"]));
}

TEST(FullyShard, UnitListThatMissesAParameterIsRefused) {
  const auto what = usage_error_of({"layers.0", "layers.2"});
  EXPECT_NE(what.find("FullyShardOptions::units misses parameter(s) 'layers.4.weight', 'layers.4.bias'"),
            std::string::npos)
      << what;
}

TEST(FullyShard, UnitNamedTwiceIsRefused) {
  const auto what = usage_error_of({"layers.0", "layers.2", "layers.0", "layers.4"});
  EXPECT_NE(what.find("FullyShardOptions::units names 'layers.0' twice"), std::string::npos) << what;
}

TEST(FullyShard, UnknownOrOverlappingOrUnreplaceableUnitsAreRefused) {
  auto what = usage_error_of({"layers.9"});
  EXPECT_NE(what.find("FullyShardOptions::units names 'layers.9', which is not a submodule"), std::string::npos)
      << what;
  what = usage_error_of({"layers", "layers.0"});
  EXPECT_NE(what.find("'layers.0' inside unit 'layers'"), std::string::npos) << what;
  what = usage_error_of({"layers"});  // the Sequential itself: its parent is not a Sequential
  EXPECT_NE(what.find("'layers', which is not a child of a torch::nn::Sequential"), std::string::npos) << what;
}

// One weight in two units (tied, as an embedding and the output head;
// zero_test::make_tied): sharded once, its gradient summed over both units,
// trained as one process trains it.
using zero_test::make_tied;
using zero_test::tied_batch;
using zero_test::tied_loss;
using zero_test::unique_parameters;

// The tied model under fully_shard, each rank on its slice; with
// max_norm > 0 the shards' gradients are clipped before each step.
Trainee fsdp_tied_trainee(const MakeOptimizer& make_optimizer, double max_norm = 0) {
  auto net = make_tied();
  auto comm = test_world().comm();
  auto sharded = std::make_shared<FullyShardedModule>(fully_shard(net.ptr(), comm));
  auto opt = make_optimizer(sharded->parameters());
  return {[net, opt, comm, sharded, max_norm](const Batch& b) mutable {
            opt->zero_grad();
            auto loss = tied_loss(net, local_slice(b, comm->rank(), comm->size()));
            loss.backward();
            if (max_norm > 0) sharded->clip_grad_norm(max_norm);
            opt->step();
            auto mean = loss.detach().clone();
            comm->all_reduce(mean, ReduceOp::kAvg);
            return mean.item<double>();
          },
          [sharded] { return sharded->full_parameters(); }};
}

void expect_tied_equivalent(const MakeOptimizer& make_optimizer, const std::string& what) {
  EquivalenceOptions eq;
  eq.steps = 4;
  auto reference = [make_optimizer] {
    auto net = make_tied();
    return plain_trainee(net.ptr(), make_optimizer(unique_parameters(*net)),
                         [net](const Batch& b) mutable { return tied_loss(net, b); });
  };
  auto parallel = [make_optimizer] { return fsdp_tied_trainee(make_optimizer); };
  auto report = check_equivalence(test_world().comm(), tied_batch, reference, parallel, eq);
  if (test_world().rank() == 0) std::printf("%s\n", report.summary_line(what).c_str());
  EXPECT_TRUE(report.pass) << report.summary_line(what);
}

TEST(FullyShard, AWeightTiedAcrossUnitsTrainsAsOneProcess) {
  expect_tied_equivalent(sgd, "fsdp-tied-sgd");
  expect_tied_equivalent(adamw, "fsdp-tied-adamw");
}

// The tied tensor is held once (one shard), under both of its names in
// full_parameters, and each unit's own bias stays in its unit.
TEST(FullyShard, ATiedWeightIsShardedOnceAndKeepsBothNames) {
  auto net = make_tied();
  const auto before = net[0]->named_parameters()["weight"].clone();
  auto sharded = fully_shard(net.ptr(), test_world().comm());
  const int n = test_world().size();
  int64_t held = 0;
  for (const auto& p : sharded.parameters()) held += p.numel();
  EXPECT_EQ(held, (4 + n - 1) / n + (20 + n - 1) / n + (4 + n - 1) / n + (16 + n - 1) / n)
      << "two biases, the Linear, and the tied weight once";
  auto full = sharded.full_parameters();
  EXPECT_TRUE(torch::equal(full.at("0.weight"), before));
  EXPECT_TRUE(torch::equal(full.at("4.weight"), before));
  EXPECT_TRUE(full.count("0.bias") && full.count("4.bias"));
}

// clip_grad_norm sums the shards' squares over the group: the norm one
// process measures (the tied weight counted once), and with a binding clip
// the same training as torch::nn::utils::clip_grad_norm_ in one process
// (SGD: a clip off by any factor changes the update).
TEST(FullyShard, ClipGradNormMeasuresTheWholeModelsNorm) {
  auto reference = make_tied(), net = make_tied();
  auto comm = test_world().comm();
  auto sharded = fully_shard(net.ptr(), comm);
  const auto b = tied_batch(0);
  tied_loss(reference, b).backward();
  tied_loss(net, local_slice(b, comm->rank(), comm->size())).backward();
  const double want = torch::nn::utils::clip_grad_norm_(unique_parameters(*reference), 1e9);
  const double got = sharded.clip_grad_norm(1e9);  // does not bind: measures only
  EXPECT_NEAR(got, want, 1e-5 * want);
  EXPECT_NEAR(grad_norm(sharded.parameters(), {comm}), want, 1e-5 * want);
  // One process: the list names the tied weight twice, the norm counts it once.
  EXPECT_NEAR(grad_norm(reference->parameters()), want, 1e-6 * want);
  EXPECT_THROW(sharded.clip_grad_norm(0), UsageError);
  EXPECT_THROW(clip_grad_norm(sharded.parameters(), 1.0, {nullptr, comm, nullptr}), UsageError);
}

constexpr double kMaxNorm = 0.05;  // below every step's norm here (each reference step checks)

TEST(FullyShard, ABindingClipTrainsAsOneProcess) {
  EquivalenceOptions eq;
  eq.steps = 4;
  auto reference = [] {
    auto net = make_tied();
    auto opt = sgd(unique_parameters(*net));
    auto params = unique_parameters(*net);
    return Trainee{[net, opt, params](const Batch& b) mutable {
                     opt->zero_grad();
                     auto loss = tied_loss(net, b);
                     loss.backward();
                     EXPECT_GT(torch::nn::utils::clip_grad_norm_(params, kMaxNorm), kMaxNorm) << "the clip binds";
                     opt->step();
                     return loss.item<double>();
                   },
                   [net] { return named_parameter_copies(*net); }};
  };
  auto parallel = [] { return fsdp_tied_trainee(sgd, kMaxNorm); };
  auto report = check_equivalence(test_world().comm(), tied_batch, reference, parallel, eq);
  if (test_world().rank() == 0) std::printf("%s\n", report.summary_line("fsdp-tied-sgd-clip").c_str());
  EXPECT_TRUE(report.pass) << report.summary_line("fsdp-tied-sgd-clip");
}

// Blocks in a torch::nn::ModuleList, as many user transformers keep them:
// the model's loop calls each through forward_unit<ListBlockImpl>, so the
// same model runs whole (the reference) and fully sharded (each element
// replaced by its FsdpUnit, which computes through unit_forward), and
// trains as one process trains it. Without unit_forward it is refused.
namespace {
struct ListBlockImpl : torch::nn::Module {
  ListBlockImpl() : fc(register_module("fc", torch::nn::Linear(6, 6))) {}
  torch::Tensor forward(const torch::Tensor& x) { return x + torch::tanh(fc->forward(x)); }
  torch::nn::Linear fc;
};
TORCH_MODULE(ListBlock);

struct ListNetImpl : torch::nn::Module {
  ListNetImpl() : blocks(register_module("blocks", torch::nn::ModuleList())) {
    for (int i = 0; i < 3; ++i) blocks->push_back(ListBlock());
  }
  torch::Tensor forward(torch::Tensor x) {
    for (const auto& m : *blocks) x = forward_unit<ListBlockImpl>(m, x);
    return x;
  }
  torch::nn::ModuleList blocks;
};
TORCH_MODULE(ListNet);

ListNet make_list_net() {
  ListNet net;
  init_parameters(*net, 11, [](const std::string&, const torch::Tensor&) { return InitSpec::normal(0.0, 0.4); });
  return net;
}

Batch list_batch(int64_t step) {
  return {torch::randn({8, 6}, generator_for(300 + static_cast<uint64_t>(step), "x")),
          torch::randn({8, 6}, generator_for(300 + static_cast<uint64_t>(step), "y"))};
}

FullyShardOptions list_units() {
  FullyShardOptions o;
  o.units = {"blocks.0", "blocks.1", "blocks.2"};
  o.unit_forward = forward_as<ListBlockImpl>();
  return o;
}
}  // namespace

TEST(FullyShard, UnitsInAModuleListTrainAsOneProcess) {
  auto reference = [] {
    auto net = make_list_net();
    return plain_trainee(net.ptr(), adamw(net->parameters()),
                         [net](const Batch& b) mutable { return torch::mse_loss(net->forward(b.input), b.target); });
  };
  auto parallel = [] {
    auto net = make_list_net();
    auto sharded = std::make_shared<FullyShardedModule>(fully_shard(net.ptr(), test_world().comm(), list_units()));
    for (size_t i = 0; i < net->blocks->size(); ++i)
      EXPECT_NE(net->blocks->ptr(i)->as<FsdpUnitImpl>(), nullptr) << "element " << i << " was not replaced";
    return Trainee{
        sharded_step(adamw(sharded->parameters()),
                     [net](const Batch& b) mutable { return torch::mse_loss(net->forward(b.input), b.target); }),
        [sharded] { return sharded->full_parameters(); }};
  };
  EquivalenceOptions eq;
  eq.steps = 4;
  auto report = check_equivalence(test_world().comm(), list_batch, reference, parallel, eq);
  if (test_world().rank() == 0) std::printf("%s\n", report.summary_line("fsdp-module-list").c_str());
  EXPECT_TRUE(report.pass) << report.summary_line("fsdp-module-list");

  auto net = make_list_net();
  FullyShardOptions no_forward = list_units();
  no_forward.unit_forward = nullptr;
  try {
    fully_shard(net.ptr(), test_world().comm(), no_forward);
    ADD_FAILURE() << "a ModuleList unit without unit_forward was accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("'blocks.0', an element of a torch::nn::ModuleList"), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("set FullyShardOptions::unit_forward"), std::string::npos) << e.what();
  }
}
