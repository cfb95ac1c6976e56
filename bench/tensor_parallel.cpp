// bench/tensor_parallel.cpp — one tensor-parallel group training a gpt layer
// stack; bench/tensor_parallel_compare runs it at tp = 1, 2, 4 with the same
// total threads divided among the ranks and prints the speed-ups.
//
//   mpirun -np TP bench_tensor_parallel
// Shape (env): BENCH_LAYERS (2) blocks of d_model BENCH_DMODEL (1024), 16
// heads, seq 128, vocab 256 (so the stack dominates), batch BENCH_BATCH (4),
// AdamW; BENCH_STEPS (8 timed, after 2 warm-up); BENCH_THREADS per rank.
// Prints, from rank 0:
//   median step ms; the fraction of it spent in tp collectives (the "tp"
//   spans of the trace: every mapping and the vocab-parallel loss's
//   all-reduces, timed as they run); and per-rank bytes of parameters +
//   gradients + optimizer state against the ideal tp=1 bytes / tp
//   (LayerNorms, row-parallel biases and wpe are whole on every rank).
#include <paratorch/layout.h>
#include <paratorch/world.h>

#include "data/dataset.h"
#include "models/model.h"
#include "tensor_parallel/mappings.h"
#include "optim/optimizer.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>

namespace {

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : fallback;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

// Measured as `paratorch` runs: idle compute threads nap (world.h).
PARATORCH_NAP_IDLE_COMPUTE_THREADS();

int main(int argc, char** argv) {
  namespace tpl = paratorch::tensor_parallel;
  paratorch::WorldOptions options;
  options.threads_per_rank = env_int("BENCH_THREADS", 0);
  paratorch::World world(argc, argv, options);
  paratorch::ProcessGroups groups(world.comm(), paratorch::Layout{1, 1, world.size()});
  const int warmup = 2, steps = env_int("BENCH_STEPS", 8), batch = env_int("BENCH_BATCH", 4);

  paratorch::models::ModelConfig cfg;
  cfg.name = "gpt"; cfg.n_layers = env_int("BENCH_LAYERS", 2); cfg.d_model = env_int("BENCH_DMODEL", 1024);
  cfg.n_heads = 16; cfg.seq_len = 128; cfg.vocab_size = 256;
  auto model = paratorch::models::make_model(cfg, tpl::TensorParallelContext{groups.tp(), false});
  model->initialize(1234);
  auto data = paratorch::data::make_dataset("synthetic", cfg, 1234);
  paratorch::optim::NamedTensors named;
  for (const auto& item : model->named_parameters(true)) named.emplace_back(item.key(), item.value());
  auto opt = paratorch::optim::make_optimizer(paratorch::optim::OptimizerOptions{}, named);

  std::vector<double> step_ms, comm_fraction;
  for (int s = 0; s < warmup + steps; ++s) {
    std::vector<int64_t> ids;
    for (int i = 0; i < batch; ++i) ids.push_back(s * batch + i);
    auto b = data->train_batch(ids);
    world.comm()->barrier();  // every rank starts the step together
    tpl::reset_tp_comm_seconds();
    auto t0 = std::chrono::steady_clock::now();
    paratorch::optim::zero_gradients(named);
    model->loss(b).backward();
    opt->step(3e-4);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (s < warmup) continue;
    step_ms.push_back(ms);
    comm_fraction.push_back(tpl::tp_comm_seconds() * 1e3 / ms);
  }

  // Parameters + gradients + optimizer state on this rank, and the whole
  // model's (the tp = 1 figure) from the full shapes.
  int64_t mine = 0, whole = 0;
  for (const auto& [name, p] : named) mine += 2 * p.numel() * static_cast<int64_t>(p.element_size());
  for (const auto& [name, t] : opt->state_tensors()) mine += t.numel() * static_cast<int64_t>(t.element_size());
  for (const auto& [name, spec] : model->shard_specs()) {
    const auto& p = model->named_parameters(true)[name];
    int64_t n = 1;
    for (auto d : spec.full_shape(p.sizes())) n *= d;
    whole += 4 * n * static_cast<int64_t>(p.element_size());  // param, grad, AdamW m and v
  }
  if (world.rank() == 0) {
    const double ideal = static_cast<double>(whole) / world.size();
    std::printf("bench_tensor_parallel: tp=%d threads_per_rank=%d layers=%d d_model=%d batch=%d steps=%d "
                "median_step_ms=%.1f tp_comm_fraction=%.3f bytes_per_rank=%lld ideal_bytes=%.0f bytes_ratio=%.3f\n",
                world.size(), world.threads(), cfg.n_layers, cfg.d_model, batch, steps, median(step_ms),
                median(comm_fraction), static_cast<long long>(mine), ideal, mine / ideal);
  }
  return 0;
}
