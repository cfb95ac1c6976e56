// bench/zero_shared.cpp — ZeroRedundancyOptimizer with one parameter copy
// per node (ZeroRedundancyOptimizerOptions::share_parameters_on_node)
// against a copy per rank, the default, in the same run.
//
// A user's torch::nn::Sequential (8 x Linear(1024) + Tanh, 8.4M parameters),
// ZeRO stage STAGE with torch::optim::AdamW, every rank of one node. Rounds
// alternate the two so drift hits both alike. Each run measures:
//   - the node's memory for the model and its training state: the growth of
//     the proportional set size (/proc/self/smaps_rollup Pss, which divides
//     a shared page among the processes that map it) summed over the ranks,
//     from before the model is built to after the timed steps, with the
//     model, gradients and optimizer alive (free heap pages trimmed first);
//   - the median step time (the slowest rank's).
// Prints each round and the medians, with shared / own ratios.
//
// Usage: mpirun -np N bench_zero_shared [STAGE [ROUNDS [STEPS]]]
#include <paratorch/world.h>
#include <paratorch/zero.h>

#include "user_model.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

constexpr int64_t kWidth = 1024, kLayers = 8, kBatch = 32;

// This process's proportional set size, in MiB, once the heap's free pages
// are handed back (World keeps freed blocks in the heap; without the trim a
// run would count what the previous one left free).
double pss_mib() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
  double kib = 0;
  if (FILE* f = std::fopen("/proc/self/smaps_rollup", "r")) {
    char line[256];
    while (std::fgets(line, sizeof line, f))
      if (std::strncmp(line, "Pss:", 4) == 0 && std::sscanf(line + 4, "%lf", &kib) == 1) break;
    std::fclose(f);
  }
  return kib / 1024.0;
}

struct Result {
  double step_ms = 0, node_mib = 0;
  bool shared = false;
};

double node_sum(paratorch::Communicator& comm, double mine) {
  auto t = torch::tensor({mine}, torch::kDouble);
  comm.all_reduce(t, paratorch::ReduceOp::kSum);
  return t.item<double>();
}

Result run(const std::shared_ptr<paratorch::Communicator>& group, int stage, int steps, bool share) {
  paratorch::Communicator& comm = *group;
  comm.barrier();
  const double before = pss_mib();
  Result out;
  {
    auto net = bench::linear_tanh_stack(kWidth, kLayers);
    paratorch::ZeroRedundancyOptimizerOptions o;
    o.stage = stage;
    o.share_parameters_on_node = share;
    paratorch::ZeroRedundancyOptimizer opt(
        net.ptr(), group,
        [](std::vector<torch::Tensor> shards) {
          return std::make_unique<torch::optim::AdamW>(shards, torch::optim::AdamWOptions(1e-3));
        },
        o);
    out.shared = opt.parameters_shared();
    const int64_t local = kBatch / comm.size();
    std::vector<double> ms;
    for (int s = 0; s < steps + 1; ++s) {  // step 0 warms up
      torch::manual_seed(100 + s);
      const auto x = torch::randn({local, kWidth}), y = torch::randn({local, kWidth});
      comm.barrier();
      const auto t0 = std::chrono::steady_clock::now();
      opt.zero_grad();
      torch::mse_loss(net->forward(x), y).backward();
      opt.step();
      const double elapsed = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      auto slowest = torch::tensor({elapsed}, torch::kDouble);
      comm.all_reduce(slowest, paratorch::ReduceOp::kMax);
      if (s > 0) ms.push_back(slowest.item<double>());
    }
    out.step_ms = bench::median(ms);
    out.node_mib = node_sum(comm, pss_mib() - before);
    comm.barrier();  // every rank has measured before any unmaps the shared copy
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  paratorch::World world(argc, argv);
  const int stage = argc > 1 ? std::atoi(argv[1]) : 1;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 5;
  const int steps = argc > 3 ? std::atoi(argv[3]) : 10;
  if (world.size() < 2 || (stage != 1 && stage != 2) || kBatch % world.size() != 0) {
    if (world.rank() == 0)
      std::fprintf(stderr, "bench_zero_shared: run under mpirun -np N (N = 2, 4, 8, 16, 32), STAGE 1 or 2\n");
    return 2;
  }
  auto comm = world.comm();
  std::vector<double> own_ms, shared_ms, own_mib, shared_mib, time_ratio, memory_ratio;
  bool shared_took = true;
  for (int r = 0; r < rounds; ++r) {
    // Alternate the order so neither always runs on a warm allocator.
    Result a, b;
    if (r % 2 == 0)
      a = run(comm, stage, steps, false), b = run(comm, stage, steps, true);
    else
      b = run(comm, stage, steps, true), a = run(comm, stage, steps, false);
    shared_took = shared_took && b.shared && !a.shared;
    own_ms.push_back(a.step_ms), shared_ms.push_back(b.step_ms);
    own_mib.push_back(a.node_mib), shared_mib.push_back(b.node_mib);
    time_ratio.push_back(b.step_ms / a.step_ms), memory_ratio.push_back(b.node_mib / a.node_mib);
    if (world.rank() == 0)
      std::printf("round %d: copy per rank %.1f ms %.0f MiB, one copy per node %.1f ms %.0f MiB\n", r + 1, a.step_ms,
                  a.node_mib, b.step_ms, b.node_mib);
  }
  if (world.rank() == 0) {
    const double param_mib = kLayers * (kWidth * kWidth + kWidth) * 4.0 / (1024 * 1024);
    std::printf(
        "bench_zero_shared: ranks=%d stage=%d mlp %lldx%lld (parameters %.1f MiB) AdamW: copy per rank "
        "median_step_ms=%.1f node_MiB=%.0f, one copy per node median_step_ms=%.1f node_MiB=%.0f, "
        "time_ratio=%.3f (rounds %.3f-%.3f) memory_ratio=%.3f shared=%s\n",
        world.size(), stage, static_cast<long long>(kLayers), static_cast<long long>(kWidth), param_mib,
        bench::median(own_ms), bench::median(own_mib), bench::median(shared_ms), bench::median(shared_mib),
        bench::median(time_ratio), *std::min_element(time_ratio.begin(), time_ratio.end()),
        *std::max_element(time_ratio.begin(), time_ratio.end()), bench::median(memory_ratio),
        shared_took ? "yes" : "NO (the backend gave no shared memory)");
  }
  return 0;
}
