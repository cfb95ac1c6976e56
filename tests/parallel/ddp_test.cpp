// tests/parallel/ddp_test.cpp — DDP gradients equal full-batch gradients, in
// every bucket configuration, with accumulation, unused parameters and
// replaced .grad tensors.
#include <gtest/gtest.h>

#include "mpi_test_env.h"
#include <paratorch/ddp.h>
#include <paratorch/errors.h>
#include <paratorch/init.h>
#include <paratorch/mixed_precision.h>

using paratorch::DDPOptions;
using paratorch::DistributedDataParallel;

namespace {

struct NetImpl : torch::nn::Module {
  NetImpl() {
    a = register_module("a", torch::nn::Linear(6, 16));
    b = register_module("b", torch::nn::Linear(16, 16));
    c = register_module("c", torch::nn::Linear(16, 3));
    spare = register_module("spare", torch::nn::Linear(3, 3));
  }
  torch::Tensor forward(const torch::Tensor& x, bool use_spare = true) {
    auto y = c(torch::tanh(b(torch::tanh(a(x)))));
    return use_spare ? spare(y) : y;
  }
  torch::nn::Linear a{nullptr}, b{nullptr}, c{nullptr}, spare{nullptr};
};
TORCH_MODULE(Net);

Net make_net(uint64_t seed) {
  Net net;
  paratorch::init_parameters(*net, seed, [](const std::string&, const torch::Tensor&) {
    return paratorch::InitSpec::normal(0.0, 0.5);
  });
  return net;
}

// The same global batch on every rank; rank r takes rows [r*k, (r+1)*k).
torch::Tensor global_x() { return torch::randn({8 * 3, 6}, paratorch::generator_for(7, "x")); }
torch::Tensor global_y() { return torch::randn({8 * 3, 3}, paratorch::generator_for(7, "y")); }
torch::Tensor mine(const torch::Tensor& t) {
  int64_t k = t.size(0) / test_world().size();
  return t.narrow(0, k * test_world().rank(), k);
}

std::map<std::string, torch::Tensor> full_batch_grads(const torch::Tensor& x, const torch::Tensor& y,
                                                      bool use_spare = true) {
  Net ref = make_net(1);
  torch::mse_loss(ref->forward(x, use_spare), y).backward();
  std::map<std::string, torch::Tensor> g;
  for (auto& p : ref->named_parameters())
    g[p.key()] = p.value().grad().defined() ? p.value().grad().clone() : torch::zeros_like(p.value());
  return g;
}

void expect_grads(Net& net, const std::map<std::string, torch::Tensor>& want) {
  for (auto& p : net->named_parameters()) {
    SCOPED_TRACE(p.key());
    ASSERT_TRUE(p.value().grad().defined());
    EXPECT_TRUE(torch::allclose(p.value().grad(), want.at(p.key()), 1e-5, 1e-6));
  }
}

}  // namespace

TEST(DDP, BroadcastsRankZeroWeights) {
  Net net = make_net(100 + static_cast<uint64_t>(test_world().rank()));  // differ per rank
  DistributedDataParallel ddp(net.ptr(), test_world().comm());
  Net rank0 = make_net(100);
  for (auto& p : net->named_parameters())
    EXPECT_TRUE(torch::equal(p.value(), rank0->named_parameters()[p.key()])) << p.key();
}

TEST(DDP, GradientsEqualFullBatchForAnyBucketSize) {
  auto x = global_x(), y = global_y();
  auto want = full_batch_grads(x, y);
  for (double mb : {25.0, 0.001, 0.0001}) {
    SCOPED_TRACE(mb);
    Net net = make_net(1);
    DDPOptions o;
    o.bucket_mb = mb;
    DistributedDataParallel ddp(net.ptr(), test_world().comm(), o);
    if (mb < 0.01) EXPECT_GT(ddp.buckets().size(), 1u);
    torch::mse_loss(net->forward(mine(x)), mine(y)).backward();
    EXPECT_EQ(ddp.reductions_launched(), static_cast<int64_t>(ddp.buckets().size()));
    expect_grads(net, want);
    ddp.finish();  // idempotent after backward
  }
}

TEST(DDP, NoSyncAccumulatesThenReducesTheTotal) {
  auto x = global_x(), y = global_y();
  auto want = full_batch_grads(x, y);
  Net net = make_net(1);
  DistributedDataParallel ddp(net.ptr(), test_world().comm());
  auto xs = mine(x).chunk(2), ys = mine(y).chunk(2);
  {
    auto guard = ddp.no_sync();
    (torch::mse_loss(net->forward(xs[0]), ys[0]) / 2).backward();
  }
  EXPECT_EQ(ddp.reductions_launched(), 0);
  (torch::mse_loss(net->forward(xs[1]), ys[1]) / 2).backward();
  expect_grads(net, want);
}

TEST(DDP, ReplacedGradTensorsAreStillReduced) {
  auto x = global_x(), y = global_y();
  auto want = full_batch_grads(x, y);
  Net net = make_net(1);
  DistributedDataParallel ddp(net.ptr(), test_world().comm());
  for (auto& p : net->parameters()) p.mutable_grad() = torch::Tensor();  // zero_grad(set_to_none)
  torch::mse_loss(net->forward(mine(x)), mine(y)).backward();
  expect_grads(net, want);
}

TEST(DDP, UnusedParameterNamesItselfOrIsReducedWhenAllowed) {
  auto x = global_x(), y = global_y();
  Net net = make_net(1);
  DistributedDataParallel strict(net.ptr(), test_world().comm());
  try {
    torch::mse_loss(net->forward(mine(x), /*use_spare=*/false), mine(y)).backward();
    // 'spare' gets no gradient: backward must fail naming it.
    FAIL() << "expected an error naming the unused parameter";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("spare.weight"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("find_unused_parameters"), std::string::npos);
  }
  Net net2 = make_net(1);
  DDPOptions o;
  o.find_unused_parameters = true;
  DistributedDataParallel lenient(net2.ptr(), test_world().comm(), o);
  torch::mse_loss(net2->forward(mine(x), false), mine(y)).backward();
  expect_grads(net2, full_batch_grads(x, y, false));
}

namespace {

// Each rank's and micro-batch's gradient of a bf16 net, widened, summed in
// fp32 and averaged: what fp32 main gradients must hold.
std::map<std::string, torch::Tensor> fp32_sum_of_bf16_grads(const torch::Tensor& x, const torch::Tensor& y,
                                                            int pieces) {
  const int ranks = test_world().size();
  std::map<std::string, torch::Tensor> sum;
  const auto xs = x.chunk(ranks * pieces), ys = y.chunk(ranks * pieces);
  for (size_t k = 0; k < xs.size(); ++k) {
    Net ref = make_net(1);
    ref->to(torch::kBFloat16);
    (torch::mse_loss(ref->forward(xs[k].to(torch::kBFloat16)).to(torch::kFloat), ys[k]) / pieces).backward();
    for (auto& p : ref->named_parameters()) {
      auto g = p.value().grad().to(torch::kFloat);
      sum[p.key()] = sum.count(p.key()) ? sum[p.key()] + g : g;
    }
  }
  for (auto& [name, g] : sum) g.div_(ranks);
  return sum;
}

}  // namespace

// DDPOptions::main_grad_dtype: a bf16 module's gradients are added into fp32
// buckets as they become final, so micro-batches accumulate and replicas
// average at fp32 (a bf16 sum would be off by ~1e-3); the module's .grad is
// left empty; the next step starts from zero.
TEST(DDP, MainGradientsAccumulateAndAverageInFp32) {
  auto x = global_x(), y = global_y();
  Net net = make_net(1);
  net->to(torch::kBFloat16);
  DDPOptions o;
  o.bucket_mb = 0.001;  // several buckets
  o.main_grad_dtype = torch::kFloat;
  DistributedDataParallel ddp(net.ptr(), test_world().comm(), o);
  const auto want = fp32_sum_of_bf16_grads(x, y, 2);
  auto step = [&] {
    auto xs = mine(x).chunk(2), ys = mine(y).chunk(2);
    {
      auto guard = ddp.no_sync();
      (torch::mse_loss(net->forward(xs[0].to(torch::kBFloat16)).to(torch::kFloat), ys[0]) / 2).backward();
    }
    (torch::mse_loss(net->forward(xs[1].to(torch::kBFloat16)).to(torch::kFloat), ys[1]) / 2).backward();
  };
  for (int s = 0; s < 2; ++s) {  // the second step must not add to the first's sums
    SCOPED_TRACE("step " + std::to_string(s));
    step();
    const auto main = ddp.main_grads();
    const auto params = net->named_parameters();
    ASSERT_EQ(main.size(), params.size());
    for (size_t i = 0; i < params.size(); ++i) {
      SCOPED_TRACE(params[i].key());
      EXPECT_FALSE(params[i].value().grad().defined());
      ASSERT_EQ(main[i].scalar_type(), torch::kFloat);
      EXPECT_TRUE(torch::allclose(main[i], want.at(params[i].key()), 1e-5, 1e-7))
          << (main[i] - want.at(params[i].key())).abs().max().item<double>();
    }
  }
  DistributedDataParallel plain(make_net(1).ptr(), test_world().comm());
  EXPECT_THROW(plain.main_grads(), paratorch::UsageError);
  DDPOptions bad;
  bad.main_grad_dtype = torch::kLong;
  EXPECT_THROW(bad.validate(), paratorch::UsageError);
}

// The public composition a user writes (mixed_precision.h's example): a bf16
// module under DDP with fp32 main gradients, fp32 masters that take them,
// torch::optim::SGD over the masters. Three steps equal one process that
// sums each rank's bf16 slice gradient in fp32 and steps the same masters.
TEST(DDP, Bf16ModuleWithMainGradientsAndMastersStepsAsOneProcess) {
  auto x = global_x(), y = global_y();
  const int ranks = test_world().size();
  Net net = make_net(1);
  paratorch::MasterWeights masters(net.ptr(), torch::kBFloat16);
  DDPOptions o;
  o.main_grad_dtype = torch::kFloat;
  DistributedDataParallel ddp(net.ptr(), test_world().comm(), o);
  masters.use_gradients(ddp.main_grads());
  torch::optim::SGD opt(masters.parameters(), 0.5);

  Net ref = make_net(1);
  paratorch::MasterWeights ref_masters(ref.ptr(), torch::kBFloat16);
  torch::optim::SGD ref_opt(ref_masters.parameters(), 0.5);
  for (int s = 0; s < 3; ++s) {
    opt.zero_grad();
    torch::mse_loss(net->forward(mine(x).to(torch::kBFloat16)).to(torch::kFloat), mine(y)).backward();
    masters.widen_gradients();
    opt.step();
    masters.copy_to_model();

    ref_opt.zero_grad();
    std::map<std::string, torch::Tensor> sum;
    const auto xs = x.chunk(ranks), ys = y.chunk(ranks);
    for (int r = 0; r < ranks; ++r) {
      for (auto& p : ref->parameters()) p.mutable_grad() = torch::Tensor();
      torch::mse_loss(ref->forward(xs[r].to(torch::kBFloat16)).to(torch::kFloat), ys[r]).backward();
      for (auto& p : ref->named_parameters()) {
        auto g = p.value().grad().to(torch::kFloat);
        sum[p.key()] = sum.count(p.key()) ? sum[p.key()] + g : g;
      }
    }
    for (auto& [name, m] : ref_masters.named_parameters()) m.mutable_grad() = sum.at(name) / ranks;
    ref_opt.step();
    ref_masters.copy_to_model();
  }
  const auto mine_named = masters.named_parameters(), ref_named = ref_masters.named_parameters();
  for (size_t i = 0; i < mine_named.size(); ++i) {
    SCOPED_TRACE(mine_named[i].first);
    EXPECT_TRUE(torch::allclose(mine_named[i].second, ref_named[i].second, 1e-5, 1e-6))
        << (mine_named[i].second - ref_named[i].second).abs().max().item<double>();
    EXPECT_EQ(net->named_parameters()[mine_named[i].first].scalar_type(), torch::kBFloat16);
  }
}
