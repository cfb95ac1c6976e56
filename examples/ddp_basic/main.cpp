// examples/ddp_basic/main.cpp — the classic PyTorch DDP example, in C++.
//
// PyTorch's tutorial trains a ToyModel (Linear 10->10, ReLU, Linear 10->5)
// with DistributedDataParallel. Here is the same program with paratorch.
// Run it on 2 ranks:  mpirun -np 2 ./ddp_basic
// Each rank takes its slice of the same global batch; after backward every
// rank holds the averaged gradient, so all replicas stay identical. The
// program checks exactly that at the end and exits non-zero if not.
#include <paratorch/ddp.h>
#include <paratorch/sampler.h>
#include <paratorch/world.h>

#include <cstdio>

struct ToyModelImpl : torch::nn::Module {
  ToyModelImpl() {
    net1 = register_module("net1", torch::nn::Linear(10, 10));
    net2 = register_module("net2", torch::nn::Linear(10, 5));
  }
  torch::Tensor forward(const torch::Tensor& x) { return net2(torch::relu(net1(x))); }
  torch::nn::Linear net1{nullptr}, net2{nullptr};
};
TORCH_MODULE(ToyModel);

int main(int argc, char** argv) {
  paratorch::World world(argc, argv);
  torch::manual_seed(world.rank());  // deliberately different: DDP broadcasts rank 0's weights
  ToyModel model;
  paratorch::DistributedDataParallel ddp(model.ptr(), world.comm());
  torch::optim::SGD optimizer(model->parameters(), torch::optim::SGDOptions(0.05));

  // A fixed regression task: every rank can build any sample from its id.
  const int64_t global_batch = 20;
  paratorch::DistributedSampler sampler(global_batch, world.rank(), world.size());
  torch::manual_seed(42);
  auto teacher = torch::randn({10, 5});
  auto sample = [&](const std::vector<int64_t>& ids) {
    auto x = torch::empty({static_cast<int64_t>(ids.size()), 10});
    for (size_t i = 0; i < ids.size(); ++i) {
      torch::manual_seed(1000 + ids[i]);
      x[static_cast<int64_t>(i)] = torch::randn({10});
    }
    return std::make_pair(x, torch::matmul(x, teacher));
  };

  for (int step = 0; step < 50; ++step) {
    auto [inputs, labels] = sample(sampler.local_indices(step));
    optimizer.zero_grad();
    auto loss = torch::mse_loss(model->forward(inputs), labels);
    loss.backward();  // bucketed all-reduce overlaps backward; returns with averaged grads
    optimizer.step();
    auto global_loss = loss.detach().clone();
    world.comm()->all_reduce(global_loss, paratorch::ReduceOp::kAvg);
    if (world.rank() == 0 && step % 10 == 0)
      std::printf("step %2d loss %.4f\n", step, global_loss.item<double>());
  }

  // Every replica must hold the same parameters.
  double max_diff = 0;
  for (auto& p : model->parameters()) {
    auto mine = p.detach().clone(), rank0 = p.detach().clone();
    world.comm()->broadcast(rank0, 0);
    max_diff = std::max(max_diff, (mine - rank0).abs().max().item<double>());
  }
  auto worst = torch::tensor({max_diff}, torch::kDouble);
  world.comm()->all_reduce(worst, paratorch::ReduceOp::kMax);
  if (world.rank() == 0)
    std::printf("ddp_basic: %d ranks, replicas differ by at most %.1e — %s\n", world.size(),
                worst.item<double>(), worst.item<double>() == 0 ? "in sync" : "OUT OF SYNC");
  return worst.item<double>() == 0 ? 0 : 1;
}
