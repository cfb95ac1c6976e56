// bench/fully_shard.cpp — fully_shard's step with the units' reduce-scatters
// overlapped with backward (the default: each one runs while the next unit
// back recomputes and differentiates) against the same step with a comm hook
// that waits for each reduce-scatter before backward goes on (what
// fully_shard did before), in the same run:
//   mpirun -np 2 bench_fully_shard [ROUNDS] [STEPS]
// Model: a Sequential of 8 units, each Linear(1024, 1024) + ReLU (8.4M
// parameters, a 4 MiB gradient per unit), global batch 64 split over the
// ranks, torch::optim::AdamW over the shards. Each round times STEPS steps of
// one path, then of the other (the order alternating); each path's figure is
// the median over rounds of its median step (the slowest rank's), and the
// ratio is the median of the rounds' own ratios. Ends with a check that both
// paths computed the same gradients (exit 1 if not). Before it, the cost of
// clip_grad_norm over the shards (the norm summed over the ranks) beside
// torch::nn::utils::clip_grad_norm_ over the same shards on each rank alone
// (its local part, without the sum), medians of 21 calls that do not bind.
// Last line, for scripts:
//   fully_shard: ranks=N overlapped_ms=O blocking_ms=B speedup=S
#include <paratorch/ddp.h>
#include <paratorch/world.h>
#include <paratorch/zero.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <vector>

namespace {

constexpr int kUnits = 8;
constexpr int64_t kWidth = 1024, kGlobalBatch = 64;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

/// One unit: Linear, then ReLU.
struct BlockImpl : torch::nn::Module {
  torch::nn::Linear fc{nullptr};
  BlockImpl() { fc = register_module("fc", torch::nn::Linear(kWidth, kWidth)); }
  torch::Tensor forward(const torch::Tensor& x) { return torch::relu(fc(x)); }
};
TORCH_MODULE(Block);

torch::nn::Sequential make_model() {
  torch::manual_seed(7);
  torch::nn::Sequential seq;
  for (int u = 0; u < kUnits; ++u) seq->push_back(Block());
  return seq;
}

/// Waits for each reduce-scatter inside the hook: backward cannot go on
/// until the unit's gradient has been reduced.
paratorch::CommHook blocking() {
  return [](paratorch::Communicator& comm, paratorch::GradBucket& bucket) {
    auto work = paratorch::comm_hooks::allreduce()(comm, bucket);
    work->wait();
    return work;
  };
}

struct Run {
  torch::nn::Sequential model = make_model();
  std::unique_ptr<paratorch::FullyShardedModule> sharded;
  std::unique_ptr<torch::optim::AdamW> optimizer;

  Run(std::shared_ptr<paratorch::Communicator> comm, bool overlapped) {
    sharded = std::make_unique<paratorch::FullyShardedModule>(paratorch::fully_shard(model.ptr(), comm));
    if (!overlapped) sharded->register_comm_hook(blocking());
    optimizer = std::make_unique<torch::optim::AdamW>(sharded->parameters(), torch::optim::AdamWOptions(1e-4));
  }
  /// One step on this rank's slice of batch `step`.
  void step(int64_t step, int rank, int ranks) {
    torch::manual_seed(1000 + step);
    auto x = torch::randn({kGlobalBatch, kWidth}).chunk(ranks)[static_cast<size_t>(rank)];
    optimizer->zero_grad();
    model->forward(x).pow(2).mean().backward();
    optimizer->step();
  }
};

double slowest(paratorch::Communicator& comm, double local) {
  auto t = torch::tensor({local}, torch::kDouble);
  comm.all_reduce(t, paratorch::ReduceOp::kMax);
  return t.item<double>();
}

}  // namespace

PARATORCH_NAP_IDLE_COMPUTE_THREADS();

int main(int argc, char** argv) {
  paratorch::World world(argc, argv);
  const int rounds = argc > 1 ? std::max(1, std::atoi(argv[1])) : 5;
  const int steps = argc > 2 ? std::max(2, std::atoi(argv[2])) : 8;
  auto comm = world.comm();
  Run overlapped(comm, true), waiting(comm, false);
  std::vector<double> o_ms, b_ms, ratio;
  int64_t s = 0;
  auto time_steps = [&](Run& run) {
    std::vector<double> ms;
    for (int i = 0; i < steps; ++i) {
      comm->barrier();
      const auto t0 = std::chrono::steady_clock::now();
      run.step(s++, world.rank(), world.size());
      ms.push_back(slowest(*comm, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() * 1e3));
    }
    ms.erase(ms.begin());  // the first step of a round warms up
    return median(ms);
  };
  for (int r = 0; r < rounds; ++r) {
    double o = 0, b = 0;
    if (r % 2 == 0)
      o = time_steps(overlapped), b = time_steps(waiting);
    else
      b = time_steps(waiting), o = time_steps(overlapped);
    o_ms.push_back(o);
    b_ms.push_back(b);
    ratio.push_back(b / o);
    if (world.rank() == 0) std::printf("round %d: overlapped %.1f ms, blocking %.1f ms\n", r, o, b);
  }
  // The clip's cost: the shards' gradients of the last step, not binding.
  auto time_calls = [&](const std::function<void()>& call) {
    std::vector<double> ms;
    for (int i = 0; i < 21; ++i) {
      comm->barrier();
      const auto t0 = std::chrono::steady_clock::now();
      call();
      ms.push_back(slowest(*comm, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() * 1e3));
    }
    return median(ms);
  };
  const double clip_ms = time_calls([&] { overlapped.sharded->clip_grad_norm(1e9); });
  const double local_ms = time_calls([&] { torch::nn::utils::clip_grad_norm_(overlapped.sharded->parameters(), 1e9); });
  if (world.rank() == 0)
    std::printf(
        "clip: clip_grad_norm %.2f ms, torch's clip_grad_norm_ over this rank's shards alone %.2f ms "
        "(a step: %.1f ms)\n",
        clip_ms, local_ms, median(o_ms));
  // Same parameters, same batch: the two paths' gradients must agree.
  Run a(comm, true), b(comm, false);
  a.step(0, world.rank(), world.size());
  b.step(0, world.rank(), world.size());
  double worst = 0;
  const auto pa = a.sharded->parameters(), pb = b.sharded->parameters();
  for (size_t k = 0; k < pa.size(); ++k)
    if (pa[k].numel() > 0) worst = std::max(worst, (pa[k] - pb[k]).abs().max().item<double>());
  worst = slowest(*comm, worst);
  if (world.rank() == 0) {
    std::printf("fully_shard: ranks=%d overlapped_ms=%.1f blocking_ms=%.1f speedup=%.2f\n", world.size(), median(o_ms),
                median(b_ms), median(ratio));
    if (worst > 0) std::fprintf(stderr, "fully_shard: the two paths differ by %g\n", worst);
  }
  return worst > 0 ? 1 : 0;
}
