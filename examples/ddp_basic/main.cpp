// examples/ddp_basic/main.cpp — the classic PyTorch DDP example, in C++.
//
// PyTorch's tutorial trains a ToyModel (Linear 10->10, ReLU, Linear 10->5)
// with DistributedDataParallel:
//   model = DDP(ToyModel().to(rank), device_ids=[rank])
//   loss_fn(model(x), y).backward(); optimizer.step()
// Here is the same program with paratorch. Run it on 2 ranks:
//   mpirun -np 2 ./ddp_basic            (fp32 gradients on the wire)
//   mpirun -np 2 ./ddp_basic --bf16     (bf16_compress_hook: half the bytes)
// Each rank takes its slice of the same global batch; after backward every
// rank holds the averaged gradient, so all replicas stay identical, and the
// run equals one process training on the whole batch (paratorch/verify.h).
// The program checks both and exits non-zero if either fails.
#include <paratorch/ddp.h>
#include <paratorch/verify.h>
#include <paratorch/world.h>

#include <cstdio>
#include <cstring>

struct ToyModelImpl : torch::nn::Module {
  ToyModelImpl() {
    net1 = register_module("net1", torch::nn::Linear(10, 10));
    net2 = register_module("net2", torch::nn::Linear(10, 5));
  }
  torch::Tensor forward(const torch::Tensor& x) { return net2(torch::relu(net1(x))); }
  torch::nn::Linear net1{nullptr}, net2{nullptr};
};
TORCH_MODULE(ToyModel);

// A fixed regression task: the global batch of step s, the same on every rank.
paratorch::Batch global_batch(int64_t step) {
  torch::manual_seed(42);
  auto teacher = torch::randn({10, 5});
  torch::manual_seed(1000 + step);
  auto x = torch::randn({20, 10});
  return {x, torch::matmul(x, teacher)};
}

double max_replica_difference(torch::nn::Module& model, paratorch::Communicator& comm) {
  double max_diff = 0;
  for (auto& p : model.parameters()) {
    auto mine = p.detach().clone(), rank0 = p.detach().clone();
    comm.broadcast(rank0, 0);
    max_diff = std::max(max_diff, (mine - rank0).abs().max().item<double>());
  }
  auto worst = torch::tensor({max_diff}, torch::kDouble);
  comm.all_reduce(worst, paratorch::ReduceOp::kMax);
  return worst.item<double>();
}

int main(int argc, char** argv) {
  paratorch::World world(argc, argv);
  const bool bf16 = argc > 1 && std::strcmp(argv[1], "--bf16") == 0;
  auto comm = world.comm();
  auto loss_fn = [](ToyModel& m, const paratorch::Batch& b) { return torch::mse_loss(m->forward(b.input), b.target); };

  auto reference = [&] {
    torch::manual_seed(0);
    auto model = std::make_shared<ToyModel>();
    auto opt = std::make_shared<torch::optim::SGD>((*model)->parameters(), torch::optim::SGDOptions(0.05));
    return paratorch::plain_trainee(model->ptr(), opt, [model, loss_fn](const paratorch::Batch& b) {
      return loss_fn(*model, b);
    });
  };

  std::shared_ptr<ToyModel> trained;
  auto parallel = [&] {
    // Rank 0 builds the reference's weights; the others deliberately differ,
    // since DDP starts every replica from rank 0's.
    torch::manual_seed(world.rank() == 0 ? 0 : 100 + world.rank());
    auto model = std::make_shared<ToyModel>();
    auto ddp = std::make_shared<paratorch::DistributedDataParallel>(model->ptr(), comm);
    if (bf16) ddp->register_comm_hook(paratorch::comm_hooks::bf16_compress());
    auto opt = std::make_shared<torch::optim::SGD>((*model)->parameters(), torch::optim::SGDOptions(0.05));
    trained = model;
    paratorch::Trainee t;
    t.step = [=, &world](const paratorch::Batch& global) {
      auto mine = paratorch::local_slice(global, world.rank(), world.size());
      opt->zero_grad();
      auto loss = loss_fn(*model, mine);
      loss.backward();  // bucketed all-reduce overlaps backward; returns with averaged grads
      opt->step();
      auto global_loss = loss.detach().clone();
      comm->all_reduce(global_loss, paratorch::ReduceOp::kAvg);
      (void)ddp;  // keeps DDP alive as long as the trainee
      return global_loss.item<double>();
    };
    t.full_parameters = [model] { return paratorch::named_parameter_copies(**model); };
    return t;
  };

  paratorch::EquivalenceOptions options;
  options.steps = 50;
  // bf16 keeps 8 significant bits: each step's averaged gradient is rounded
  // to ~4e-3 relative, and 50 steps of SGD carry that into the weights.
  if (bf16) options.tolerance = 2e-2;
  auto report = paratorch::check_equivalence(comm, global_batch, reference, parallel, options);
  const double replicas = max_replica_difference(**trained, *comm);
  if (world.rank() == 0) {
    for (int s = 0; s < options.steps; s += 10) std::printf("step %2d loss %.4f\n", s, report.parallel_losses[s]);
    std::printf("ddp_basic: %d ranks, replicas differ by at most %.1e — %s\n", world.size(), replicas,
                replicas == 0 ? "in sync" : "OUT OF SYNC");
    std::printf("%s\n", report.summary_line(bf16 ? "ddp bf16_compress" : "ddp").c_str());
  }
  return report.pass && replicas == 0 ? 0 : 1;
}
