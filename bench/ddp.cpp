// bench/ddp.cpp — data-parallel step time of the `mlp` benchmark model.
//
//   mpirun -np 2 bench_ddp ddp      paratorch DDP, global batch split over the ranks
//   bench_ddp single THREADS        one process, whole global batch (the limit
//                                   data parallelism can reach on these cores)
//   mpirun -np 2 bench_ddp local    each rank its slice, NO gradient exchange:
//                                   the compute-only floor of DDP on these cores
//   mpirun -np 2 bench_ddp zero1    the dp layout with the optimizer step
//                                   sharded (ZeRO-1, [parallel] zero = 1): on
//                                   one node the gradients are reduce-scattered
//                                   in place and the ranks share one parameter
//                                   copy, so each rank updates half and no
//                                   all-gather is needed (docs/zero.md)
// BENCH_ALTERNATE=1 (ddp mode): every second step runs backward inside
// no_sync(), so one run times steps with and without the gradient exchange
// side by side. The machine's speed drifts between runs; within one run it
// cancels, so this is the cleanest measure of what the exchange costs.
// BENCH_STEPS=N times N steps instead of 20.
// BENCH_PHASES=1 adds the median forward / backward (DDP: with the bucket
// all-reduces and the final wait) / optimizer split of each step.
// Model (docs/benchmarks.md): mlp d_in 784, d_model 512, 4 layers, 10 classes, global
// batch 64, AdamW. Prints the median step time over the timed steps.
// The optimizer is the trainer's (paratorch's fused AdamW) in both modes;
// BENCH_OPTIM=torch uses torch::optim::AdamW instead, for comparison.
#include <paratorch/ddp.h>
#include <paratorch/sampler.h>
#include <paratorch/world.h>

#include "data/dataset.h"
#include "data/synthetic.h"
#include "models/model.h"
#include "train/engine_factory.h"
#include "optim/optimizer.h"
#include <paratorch/layout.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>

namespace {

// The batches the other modes prebuild, served to an engine, so that the
// zero1 mode does not time data generation either.
class PrebuiltBatches : public paratorch::data::Dataset {
 public:
  explicit PrebuiltBatches(paratorch::models::ModelConfig cfg) : cfg_(std::move(cfg)) {}
  void add(const std::vector<int64_t>& ids) { cache_[ids] = paratorch::data::synthetic_batch(cfg_, ids, 7); }
  paratorch::models::Batch train_batch(const std::vector<int64_t>& ids) const override { return cache_.at(ids); }
  paratorch::models::Batch validation_batch(const std::vector<int64_t>& ids) const override { return cache_.at(ids); }
  std::string describe() const override { return "prebuilt synthetic batches"; }

 private:
  paratorch::models::ModelConfig cfg_;
  std::map<std::vector<int64_t>, paratorch::models::Batch> cache_;
};

// One timed run of the zero1 mode: the trainer's engine and sharded optimizer.
std::vector<double> run_zero1(paratorch::World& world, const paratorch::models::ModelConfig& cfg,
                              int64_t global_batch, int warmup, int steps,
                              std::pair<std::vector<double>, std::vector<double>>* phases) {
  paratorch::train::Config c;
  static_cast<paratorch::models::ModelConfig&>(c.model) = cfg;
  c.data.source = "synthetic";
  c.data.global_batch = global_batch;
  c.parallel.zero = 1;
  c.optim.name = "adamw";
  c.optim.lr = 3e-4;
  c.optim.weight_decay = 0.1;
  c.validate();
  const auto layout = paratorch::Layout{world.size(), 1, 1}.resolve(world.size());
  paratorch::ProcessGroups groups(world.comm(), layout);
  PrebuiltBatches data(cfg);
  paratorch::DistributedSampler global(global_batch, 0, 1), mine(global_batch, world.rank(), world.size());
  for (int s = 0; s < warmup + steps; ++s) data.add(mine.local_indices(s));
  auto engine = paratorch::train::make_engine(c, groups, paratorch::models::make_model(cfg), data, world.device());
  auto optimizer = engine->build_optimizer(c.optim);
  std::vector<double> ms;
  for (int s = 0; s < warmup + steps; ++s) {
    world.comm()->barrier();
    auto t0 = std::chrono::steady_clock::now();
    paratorch::optim::zero_gradients(engine->named_parameters());
    engine->forward_backward(paratorch::parallel::local_microbatches(*engine, data, global.global_indices(s)));
    const auto t_backward = std::chrono::steady_clock::now();
    optimizer->step(3e-4);
    const auto t_end = std::chrono::steady_clock::now();
    if (s >= warmup && phases) {
      phases->first.push_back(std::chrono::duration<double, std::milli>(t_backward - t0).count());
      phases->second.push_back(std::chrono::duration<double, std::milli>(t_end - t_backward).count());
    }
    auto t = torch::tensor({std::chrono::duration<double, std::milli>(t_end - t0).count()}, torch::kDouble);
    world.comm()->all_reduce(t, paratorch::ReduceOp::kMax);
    if (s >= warmup) ms.push_back(t.item<double>());
  }
  return ms;
}

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

}  // namespace

// Measured as `paratorch` runs: idle compute threads nap (world.h).
PARATORCH_NAP_IDLE_COMPUTE_THREADS();

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "ddp";
  const bool single = std::strcmp(mode, "single") == 0;
  const bool local = std::strcmp(mode, "local") == 0;  // ranks, but no DDP
  const bool phases = std::getenv("BENCH_PHASES") != nullptr;
  paratorch::WorldOptions options;
  if (single && argc > 2) options.threads_per_rank = std::atoi(argv[2]);
  paratorch::World world(argc, argv, options);
  const int warmup = 3, steps = std::getenv("BENCH_STEPS") ? std::atoi(std::getenv("BENCH_STEPS")) : 20;
  const int64_t global_batch = 64;
  if (steps < 2) {
    std::fprintf(stderr, "bench_ddp: BENCH_STEPS must be an integer >= 2\n");
    return 2;
  }

  paratorch::models::ModelConfig cfg;
  cfg.name = "mlp"; cfg.d_in = 784; cfg.d_model = 512; cfg.n_layers = 4; cfg.n_classes = 10;
  if (std::strcmp(mode, "zero1") == 0) {
    std::pair<std::vector<double>, std::vector<double>> split;  // forward+backward, optimizer
    auto ms = run_zero1(world, cfg, global_batch, warmup, steps, &split);
    std::sort(ms.begin(), ms.end());
    if (world.rank() == 0)
      std::printf("bench_ddp: mode=zero1 optimizer=paratorch-sharded ranks=%d threads_per_rank=%d median_step_ms=%.1f "
                  "min_step_ms=%.1f\n", world.size(), world.threads(), ms[ms.size() / 2], ms.front());
    if (phases && world.rank() == 0)
      std::printf("bench_ddp_phases: mode=zero1 forward_backward_ms=%.1f optimizer_ms=%.1f\n", median_of(split.first),
                  median_of(split.second));
    return 0;
  }
  auto model = paratorch::models::make_model(cfg);
  model->initialize(1234);
  std::unique_ptr<paratorch::DistributedDataParallel> ddp;
  paratorch::DDPOptions ddp_options;
  if (const char* mb = std::getenv("BENCH_BUCKET_MB")) ddp_options.bucket_mb = std::atof(mb);
  if (!single && !local) ddp = std::make_unique<paratorch::DistributedDataParallel>(model, world.comm(), ddp_options);
  const char* optim_env = std::getenv("BENCH_OPTIM");
  const bool torch_optim = optim_env && std::strcmp(optim_env, "torch") == 0;
  torch::optim::AdamW torch_opt(model->parameters(), torch::optim::AdamWOptions(3e-4).weight_decay(0.1));
  paratorch::optim::OptimizerOptions optim;  // adamw, weight decay 0.1 (lr 3e-4 at each step)
  paratorch::optim::NamedTensors named;
  for (const auto& item : model->named_parameters(true)) named.emplace_back(item.key(), item.value());
  auto paratorch_opt = paratorch::optim::make_optimizer(optim, named);
  int dp = single ? 1 : world.size(), rank = single ? 0 : world.rank();
  paratorch::DistributedSampler sampler(global_batch, rank, dp);

  // Pre-build the batches so data generation is not timed.
  std::vector<paratorch::models::Batch> batches;
  for (int s = 0; s < warmup + steps; ++s)
    batches.push_back(paratorch::data::synthetic_batch(cfg, sampler.local_indices(s), 7));

  std::vector<double> ms, optim_ms, forward_ms, backward_ms, no_sync_ms;
  const bool alternate = std::getenv("BENCH_ALTERNATE") != nullptr;
  auto since = [](std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
  };
  for (int s = 0; s < warmup + steps; ++s) {
    if (!single) world.comm()->barrier();
    auto t0 = std::chrono::steady_clock::now();
    paratorch::optim::zero_gradients(named);
    auto loss = model->loss(batches[static_cast<size_t>(s)]);
    auto t_forward = std::chrono::steady_clock::now();
    if (ddp && alternate && s % 2 == 1) {
      auto guard = ddp->no_sync();
      loss.backward();
    } else {
      loss.backward();
    }
    auto t_backward = std::chrono::steady_clock::now();
    if (s >= warmup) {
      forward_ms.push_back(std::chrono::duration<double, std::milli>(t_forward - t0).count());
      backward_ms.push_back(std::chrono::duration<double, std::milli>(t_backward - t_forward).count());
    }
    if (torch_optim) torch_opt.step();
    else paratorch_opt->step(3e-4);
    if (s >= warmup) optim_ms.push_back(since(t_backward));
    auto t = torch::tensor({since(t0)}, torch::kDouble);
    if (!single) world.comm()->all_reduce(t, paratorch::ReduceOp::kMax);
    if (s >= warmup) (alternate && s % 2 == 1 ? no_sync_ms : ms).push_back(t.item<double>());
    if (std::getenv("BENCH_VERBOSE") && world.rank() == 0) std::printf("  step %d %.1f ms\n", s, t.item<double>());
  }
  std::sort(ms.begin(), ms.end());
  if (world.rank() == 0)
    std::printf("bench_ddp: mode=%s optimizer=%s ranks=%d threads_per_rank=%d median_step_ms=%.1f min_step_ms=%.1f "
                "median_optimizer_ms=%.1f\n",
                mode, torch_optim ? "torch" : "paratorch", single ? 1 : world.size(), world.threads(),
                ms[ms.size() / 2], ms.front(),
                median_of(optim_ms));
  if (alternate && world.rank() == 0)
    std::printf("bench_ddp_alternate: exchange_step_ms=%.1f no_sync_step_ms=%.1f ratio=%.3f\n", median_of(ms),
                median_of(no_sync_ms), median_of(ms) / median_of(no_sync_ms));
  // Rank 0's own phases (the step time above is the slowest rank's).
  if (phases && world.rank() == 0)
    std::printf("bench_ddp_phases: mode=%s forward_ms=%.1f backward_ms=%.1f optimizer_ms=%.1f\n", mode,
                median_of(forward_ms), median_of(backward_ms), median_of(optim_ms));
  return 0;
}
