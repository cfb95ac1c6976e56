// bench/pipeline_sync.cpp — ZeRO-1 inside a public Pipeline (dp 2 x pp 2,
// run under mpirun -np 4), with and without Pipeline::set_gradient_sync.
//
// Without it, ZeroRedundancyOptimizer reduces its flat buffers during every
// micro-batch's backward (m reductions per step); with it, only during the
// rank's last backward (one). The peer is the same program without the
// hook, in the same run: rounds alternate the two so drift hits both alike.
// Prints each round, the medians of the per-round median step times, the
// reductions per step of each, and the ratio with / without.
//
// Usage: mpirun -np 4 bench_pipeline_sync [ROUNDS [STEPS [MICROBATCHES]]]
#include <paratorch/layout.h>
#include <paratorch/pipeline.h>
#include <paratorch/verify.h>
#include <paratorch/world.h>
#include <paratorch/zero.h>

#include "user_model.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

namespace {

constexpr int64_t kWidth = 512, kLayers = 8, kBatch = 64;

struct Result {
  double median_ms = 0;
  int64_t reductions_per_step = 0;
};

// `steps` steps of one configuration; the median step time and the
// reductions each step launched (the same every step).
Result run(const paratorch::ProcessGroups& groups, int steps, int microbatches, bool sync_once) {
  paratorch::PipelineOptions po;
  po.microbatches = microbatches;
  po.schedule = paratorch::PipelineSchedule::kOneFOneB;
  const int64_t local = kBatch / groups.layout().dp;
  paratorch::Pipeline pipe(bench::linear_tanh_stack(kWidth, kLayers), groups.pp(),
                           torch::zeros({local / microbatches, kWidth}), po);
  paratorch::ZeroRedundancyOptimizer opt(pipe.named_parameters(), groups.dp(),
                                         [](std::vector<torch::Tensor> shards) {
                                           return std::make_unique<torch::optim::AdamW>(
                                               shards, torch::optim::AdamWOptions(1e-3));
                                         },
                                         {});
  if (sync_once) pipe.set_gradient_sync([&opt](bool last) { opt.set_requires_gradient_sync(last); });
  auto mse = [](const torch::Tensor& out, const torch::Tensor& target) { return torch::mse_loss(out, target); };
  std::vector<double> ms;
  int64_t reductions = 0;
  for (int s = 0; s < steps + 1; ++s) {  // step 0 warms up
    torch::manual_seed(100 + s);
    const auto x = torch::randn({local, kWidth}), y = torch::randn({local, kWidth});
    groups.world()->barrier();
    const auto t0 = std::chrono::steady_clock::now();
    const int64_t before = opt.reductions_launched();
    opt.zero_grad();
    pipe.step(x, y, mse);
    opt.step();
    const double elapsed = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    reductions = opt.reductions_launched() - before;
    auto slowest = torch::tensor({elapsed}, torch::kDouble);
    groups.world()->all_reduce(slowest, paratorch::ReduceOp::kMax);
    if (s > 0) ms.push_back(slowest.item<double>());
  }
  return {bench::median(ms), reductions};
}

}  // namespace

int main(int argc, char** argv) {
  paratorch::World world(argc, argv);
  if (world.size() != 4) {
    if (world.rank() == 0) std::fprintf(stderr, "bench_pipeline_sync: run under mpirun -np 4 (dp 2 x pp 2)\n");
    return 2;
  }
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 5;
  const int steps = argc > 2 ? std::atoi(argv[2]) : 10;
  const int microbatches = argc > 3 ? std::atoi(argv[3]) : 4;
  paratorch::ProcessGroups groups(world.comm(), paratorch::Layout{2, 2, 1}.resolve(4));
  std::vector<double> every, once, ratio;
  Result a, b;
  for (int r = 0; r < rounds; ++r) {
    a = run(groups, steps, microbatches, false);
    b = run(groups, steps, microbatches, true);
    every.push_back(a.median_ms), once.push_back(b.median_ms), ratio.push_back(b.median_ms / a.median_ms);
    if (world.rank() == 0)
      std::printf("round %d: every backward %.1f ms, last backward only %.1f ms (%.3f)\n", r + 1, a.median_ms,
                  b.median_ms, b.median_ms / a.median_ms);
  }
  if (world.rank() == 0)
    std::printf(
        "bench_pipeline_sync: dp=2 pp=2 1f1b m=%d mlp %lldx%lld, ZeRO-1 AdamW: reduced every backward "
        "median_step_ms=%.1f (%lld reductions/step), last backward only median_step_ms=%.1f (%lld reductions/step), "
        "ratio=%.3f (median of rounds; rounds %.3f-%.3f)\n",
        microbatches, static_cast<long long>(kLayers), static_cast<long long>(kWidth), bench::median(every),
        static_cast<long long>(a.reductions_per_step), bench::median(once),
        static_cast<long long>(b.reductions_per_step), bench::median(ratio),
        *std::min_element(ratio.begin(), ratio.end()), *std::max_element(ratio.begin(), ratio.end()));
  return 0;
}
