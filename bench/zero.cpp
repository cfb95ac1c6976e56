// bench/zero.cpp — ZeRO's memory per rank against the paper's formula, and step time.
//
//   mpirun -np N bench_zero STAGE [TP]  (bench/zero_compare runs stages 0..3 at N = 2, 4, 8,
//                                        and ZeRO x tp: N = 4, TP = 2, so dp = N / TP)
// Model: gpt 8 layers x d_model 768 (12 heads, seq 32, vocab 256): ~57M
// parameters, so model state dominates; global batch 8 (synthetic tokens),
// AdamW, fp32. Stage 0 is the data-parallel engine (DDP), stages 1-3 ZeroEngine.
// Prints one line per run: this rank's bytes of parameters + gradients +
// optimizer state (measured: the tensors the engine and optimizer hold after a
// step), the formula of ZeRO §3.1 for fp32 (4+4+8 bytes per parameter,
// divided per stage; with TP > 1, Ψ is this rank's tp shard of the model:
// sharded matrices count 1/TP, replicated LayerNorms and biases whole) and
// their ratio, peak resident memory (max over ranks),
// the runtime's own resident memory before the model exists (libtorch + MPI),
// and the median step time over the timed steps.
#include "data/dataset.h"
#include "parallel/engine.h"
#include "parallel/zero/zero_engine.h"
#include "train/engine_factory.h"
#include "train/engine_options.h"
#include <paratorch/sampler.h>
#include <paratorch/world.h>

#include <sys/resource.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

using namespace paratorch;

namespace {

// Resident memory now (/proc/self/statm), for the runtime's own share before the model exists.
double current_rss_mib() {
  long pages = 0, resident = 0;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return static_cast<double>(resident) * 4096.0 / (1024.0 * 1024.0);
}

// Peak resident memory so far (/proc/self/status VmHWM), in MiB.
double hwm_mib() {
  double kib = 0;
  if (FILE* f = std::fopen("/proc/self/status", "r")) {
    char line[256];
    while (std::fgets(line, sizeof(line), f))
      if (std::sscanf(line, "VmHWM: %lf", &kib) == 1) break;
    std::fclose(f);
  }
  return kib / 1024.0;
}

// BENCH_ZERO_MEM=1: rank 0 prints where its memory is after each phase
// (resident now, peak so far, glibc heap size / in use / free, mmapped).
void mem_report(int rank, const char* where, int step) {
  static const bool on = std::getenv("BENCH_ZERO_MEM") && std::string(std::getenv("BENCH_ZERO_MEM")) != "0";
  if (!on || rank != 0) return;
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)  // mallinfo2
  const auto m = mallinfo2();
  const double mib = 1024.0 * 1024.0;
  std::printf("mem: step=%d %s rss=%.0f hwm=%.0f heap=%.0f in_use=%.0f free=%.0f mmapped=%.0f\n", step, where,
              current_rss_mib(), hwm_mib(), static_cast<double>(m.arena) / mib, static_cast<double>(m.uordblks) / mib,
              static_cast<double>(m.fordblks) / mib, static_cast<double>(m.hblkhd) / mib);
#else
  std::printf("mem: step=%d %s rss=%.0f hwm=%.0f\n", step, where, current_rss_mib(), hwm_mib());
#endif
  std::fflush(stdout);
}

double peak_rss_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;
}

// Stage 0 (DataParallelEngine): the model's parameters, their gradients
// (DDP bucket views) and the optimizer's state, as held.
zero::ModelStateBytes measure_ddp(parallel::Engine& engine, const optim::Optimizer& optimizer) {
  zero::ModelStateBytes b;
  for (auto& [name, p] : engine.named_parameters()) {
    b.parameters += static_cast<int64_t>(p.nbytes());
    if (p.grad().defined()) b.gradients += static_cast<int64_t>(p.grad().nbytes());
  }
  for (const auto& [key, t] : optimizer.state_tensors())
    if (key != "step") b.optimizer += static_cast<int64_t>(t.nbytes());
  return b;
}

}  // namespace

// Measured as `paratorch` runs: idle compute threads nap (world.h).
PARATORCH_NAP_IDLE_COMPUTE_THREADS();

int main(int argc, char** argv) {
  World world(argc, argv);
  const double runtime_rss = current_rss_mib();  // libtorch + MPI, before any model state
  mem_report(world.rank(), "start", -1);
  const int stage = argc > 1 ? std::atoi(argv[1]) : 0;
  const int tp = argc > 2 ? std::atoi(argv[2]) : 1;
  const int warmup = 1, steps = std::getenv("BENCH_STEPS") ? std::atoi(std::getenv("BENCH_STEPS")) : 3;
  train::Config c;
  c.model.name = "gpt";
  c.model.n_layers = 8;
  c.model.d_model = 768;
  c.model.n_heads = 12;
  c.model.seq_len = 32;
  c.data.source = "synthetic";
  c.data.global_batch = 8;
  c.parallel.zero = stage;
  // This bench measures peak memory: stage 3 returns each block's freed
  // pages to the OS, as a memory-bound run would ask it to.
  c.parallel.zero_release_memory = stage == 3;
  c.parallel.tp = tp;
  c.optim.name = "adamw";
  c.validate();

  const Layout layout = Layout{world.size() / tp, 1, tp}.resolve(world.size());
  ProcessGroups groups(world.comm(), layout);
  auto dataset = data::make_dataset(c.data.source, c.model, 1);
  mem_report(world.rank(), "dataset", -1);
  auto engine = train::make_engine(c, groups, models::make_model(c.model), *dataset, world.device());
  auto optimizer = engine->build_optimizer(c.optim);
  mem_report(world.rank(), "built", -1);
  DistributedSampler batches(c.data.global_batch, 0, 1);  // the global ids; engines slice them
  std::vector<double> ms;
  for (int s = 0; s < warmup + steps; ++s) {
    world.comm()->barrier();
    const auto t0 = std::chrono::steady_clock::now();
    auto params = engine->named_parameters();
    optim::zero_gradients(params);
    engine->forward_backward(parallel::local_microbatches(*engine, *dataset, batches.global_indices(s)));
    mem_report(world.rank(), "backward", s);
    optimizer->step(1e-4);
    mem_report(world.rank(), "optimizer", s);
    world.comm()->barrier();
    const double t = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (s >= warmup) ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());

  auto* zero = dynamic_cast<zero::ZeroEngine*>(engine.get());
  const zero::ModelStateBytes held = zero ? zero->model_state_bytes() : measure_ddp(*engine, *optimizer);
  const auto formula = zero::estimate_memory(train::memory_estimate_options(c), engine->local_parameter_count(), layout.dp);
  auto stats = torch::tensor({static_cast<double>(held.total()), peak_rss_mib(), runtime_rss}, torch::kDouble);
  world.comm()->all_reduce(stats, ReduceOp::kMax);
  if (world.rank() == 0) {
    const double mib = 1024.0 * 1024.0;
    std::printf("zero: dp=%d tp=%d stage=%d params=%.1fM local=%.1fM state_MiB=%.1f (p %.1f g %.1f o %.1f) formula_MiB=%.1f ratio=%.3f "
                "peak_rss_MiB=%.0f runtime_rss_MiB=%.0f step_ms=%.0f\n",
                layout.dp, tp, stage, static_cast<double>(engine->parameter_count()) / 1e6,
                static_cast<double>(engine->local_parameter_count()) / 1e6, stats[0].item<double>() / mib,
                static_cast<double>(held.parameters) / mib, static_cast<double>(held.gradients) / mib,
                static_cast<double>(held.optimizer) / mib, formula.model_state() / mib,
                stats[0].item<double>() / formula.model_state(), stats[1].item<double>(), stats[2].item<double>(),
                ms[ms.size() / 2]);
  }
  return 0;
}
