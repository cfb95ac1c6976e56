// tests/parallel/ddp_hooks_test.cpp — DDP's communication hooks (16-bit
// compression really reduces in 16 bits; custom hooks see every bucket in
// order) and join() for uneven inputs (the average follows the ranks that
// contributed; every replica ends equal to the one-process run).
#include <gtest/gtest.h>

#include "mpi_test_env.h"
#include <paratorch/ddp.h>
#include <paratorch/init.h>

using paratorch::DDPOptions;
using paratorch::DistributedDataParallel;

namespace {

std::shared_ptr<torch::nn::Sequential> make_seq() {
  auto seq = std::make_shared<torch::nn::Sequential>(torch::nn::Linear(5, 12), torch::nn::Tanh(),
                                                     torch::nn::Linear(12, 12), torch::nn::Tanh(),
                                                     torch::nn::Linear(12, 2));
  paratorch::init_parameters(**seq, 3, [](const std::string&, const torch::Tensor&) {
    return paratorch::InitSpec::normal(0.0, 0.5);
  });
  return seq;
}

torch::Tensor batch_x(int rank, int step, int64_t rows = 4) {
  return torch::randn({rows, 5}, paratorch::generator_for(11, "x" + std::to_string(rank) + "." + std::to_string(step)));
}
torch::Tensor batch_y(int rank, int step, int64_t rows = 4) {
  return torch::randn({rows, 2}, paratorch::generator_for(11, "y" + std::to_string(rank) + "." + std::to_string(step)));
}

double max_rel_diff(torch::nn::Module& a, torch::nn::Module& b) {
  double worst = 0;
  auto pb = b.named_parameters();
  for (auto& p : a.named_parameters()) {
    auto& q = pb[p.key()];
    worst = std::max(worst, ((p.value() - q).norm() / q.norm()).item<double>());
  }
  return worst;
}

// The global batch of one step: every rank's 4 rows, in rank order.
std::pair<torch::Tensor, torch::Tensor> whole_step(int step, int ranks) {
  std::vector<torch::Tensor> xs, ys;
  for (int r = 0; r < ranks; ++r) xs.push_back(batch_x(r, step)), ys.push_back(batch_y(r, step));
  return {torch::cat(xs), torch::cat(ys)};
}

TEST(DDPHooks, Bf16CompressionFollowsFp32WithinBf16PrecisionButNotExactly) {
  auto& world = test_world();
  auto exact = make_seq(), compressed = make_seq();
  DistributedDataParallel ddp_exact(exact->ptr(), world.comm());
  DistributedDataParallel ddp_bf16(compressed->ptr(), world.comm());
  ddp_bf16.register_comm_hook(paratorch::comm_hooks::bf16_compress());
  for (auto* m : {exact.get(), compressed.get()})
    torch::mse_loss((*m)->forward(batch_x(world.rank(), 0)), batch_y(world.rank(), 0)).backward();
  double worst = 0, any = 0;
  auto cp = (*compressed)->parameters();
  auto ep = (*exact)->parameters();
  for (size_t i = 0; i < ep.size(); ++i) {
    auto d = (cp[i].grad() - ep[i].grad()).abs();
    worst = std::max(worst, (d.max() / ep[i].grad().abs().max()).item<double>());
    any = std::max(any, d.max().item<double>());
    // The result itself must be a bf16 value: the sum happened in 16 bits.
    EXPECT_TRUE(torch::equal(cp[i].grad(), cp[i].grad().to(torch::kBFloat16).to(torch::kFloat)));
  }
  EXPECT_LT(worst, 2e-2);  // bf16 keeps 8 bits of mantissa: ~4e-3 per rounding
  if (world.size() > 1) EXPECT_GT(any, 0.0) << "bf16 compression left the fp32 gradients untouched";
}

TEST(DDPHooks, ACustomHookSeesEveryBucketInOrderWithTheGroupAsDivisor) {
  auto& world = test_world();
  auto seq = make_seq();
  DDPOptions options;
  options.bucket_mb = 1e-4;  // one bucket per parameter or so
  DistributedDataParallel ddp(seq->ptr(), world.comm(), options);
  std::vector<size_t> seen;
  ddp.register_comm_hook([&](paratorch::Communicator& comm, paratorch::GradBucket& bucket) {
    seen.push_back(bucket.index);
    EXPECT_EQ(bucket.divisor, comm.size());
    return paratorch::comm_hooks::allreduce()(comm, bucket);
  });
  torch::mse_loss((*seq)->forward(batch_x(world.rank(), 0)), batch_y(world.rank(), 0)).backward();
  ASSERT_EQ(seen.size(), ddp.buckets().size());
  for (size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], i);
  EXPECT_GT(seen.size(), 2u);
}

// Rank r has 2 + r steps of data. Step s averages over the ranks that still
// have data at s; the reference trains one model on exactly those rows.
TEST(DDPJoin, UnevenInputsAverageOverTheRanksThatContributed) {
  auto& world = test_world();
  const int ranks = world.size(), my_steps = 2 + world.rank(), total_steps = 2 + ranks - 1;
  auto seq = make_seq();
  DistributedDataParallel ddp(seq->ptr(), world.comm());
  torch::optim::SGD opt((*seq)->parameters(), 0.1);
  int64_t shadowed = 0;
  {
    auto join = ddp.join();
    for (int s = 0; s < my_steps; ++s) {
      opt.zero_grad();
      torch::mse_loss((*seq)->forward(batch_x(world.rank(), s)), batch_y(world.rank(), s)).backward();
      opt.step();
    }
    shadowed = join.finish();
  }
  auto ref = make_seq();
  torch::optim::SGD ref_opt((*ref)->parameters(), 0.1);
  for (int s = 0; s < total_steps; ++s) {
    const int active = std::min(ranks, ranks - (s - 1));  // ranks r with 2 + r > s
    auto [x, y] = whole_step(s, ranks);
    const int first = ranks - active;
    ref_opt.zero_grad();
    torch::mse_loss((*ref)->forward(x.narrow(0, first * 4, active * 4)), y.narrow(0, first * 4, active * 4)).backward();
    ref_opt.step();
  }
  EXPECT_LT(max_rel_diff(**seq, **ref), 1e-5) << "rank " << world.rank() << " after join";
  // Rank r shadowed the (total - mine) passes it sat out, every bucket each.
  EXPECT_EQ(shadowed, static_cast<int64_t>((total_steps - my_steps) * ddp.buckets().size()));
}

// One rank sits out the second step: its zeros must not halve the others'
// bf16-compressed average (the hook divides by the contributing ranks).
TEST(DDPJoin, Bf16HookAlsoFollowsTheContributingRanks) {
  auto& world = test_world();
  if (world.size() < 2) GTEST_SKIP() << "needs two ranks";
  auto seq = make_seq(), ref = make_seq();
  DistributedDataParallel ddp(seq->ptr(), world.comm());
  ddp.register_comm_hook(paratorch::comm_hooks::bf16_compress());
  double worst = 0;  // on the ranks that took step 1; shared so every rank judges it
  {
    auto join = ddp.join();
    const int my_steps = world.rank() == 0 ? 1 : 2;
    for (int s = 0; s < my_steps; ++s) {
      (*seq)->zero_grad();
      torch::mse_loss((*seq)->forward(batch_x(world.rank(), s)), batch_y(world.rank(), s)).backward();
    }
    if (my_steps == 2) {
      auto [x, y] = whole_step(1, world.size());  // ranks 1.. contributed: rows 4..
      torch::mse_loss((*ref)->forward(x.narrow(0, 4, x.size(0) - 4)), y.narrow(0, 4, y.size(0) - 4)).backward();
      auto mine = (*seq)->parameters(), want = (*ref)->parameters();
      for (size_t i = 0; i < mine.size(); ++i)
        worst = std::max(worst, ((mine[i].grad() - want[i].grad()).abs().max() / want[i].grad().abs().max()).item<double>());
    }
  }
  auto shared = torch::tensor({worst}, torch::kDouble);
  world.comm()->all_reduce(shared, paratorch::ReduceOp::kMax);
  EXPECT_LT(shared.item<double>(), 2e-2);
}

}  // namespace
