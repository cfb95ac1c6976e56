// bench/train.cpp — tokens/s of single-process `gpt` training, the number that
// bench/train_compare sets beside the same model in PyTorch Python
// (bench/peers/train_gpt.py).
//
//   bench_train            demo shape: 4 layers, d_model 256, 4 heads, seq 128,
//                          vocab 256; AdamW(3e-4, wd 0.1); KJV byte windows
// Env: BENCH_BATCH (16), BENCH_STEPS (20 timed, after 3 warm-up),
//      BENCH_THREADS (0 = World's choice), BENCH_PHASES=1 (also print the
//      median forward / backward / optimizer ms), BENCH_VERBOSE=1 (every step).
// The process is set up by World (threads, malloc) and reads its batches
// through Dataset::train_batch, as the trainer does; fetching a batch is not
// timed. A step is zero_grad + forward + loss + backward + optimizer step.
#include <paratorch/compat.h>
#include <paratorch/sampler.h>
#include <paratorch/world.h>

#include "data/dataset.h"
#include "models/model.h"
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

const char* env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v ? v : fallback;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

/// Per-step milliseconds of each phase.
struct Timings {
  std::vector<double> step, forward, backward, optimizer;
};

}  // namespace

// Measured as `paratorch` runs: idle compute threads nap (world.h).
PARATORCH_NAP_IDLE_COMPUTE_THREADS();

int main(int argc, char** argv) {
  paratorch::WorldOptions options;
  options.threads_per_rank = env_int("BENCH_THREADS", 0);
  paratorch::World world(argc, argv, options);
  const int warmup = 3, steps = env_int("BENCH_STEPS", 20), batch = env_int("BENCH_BATCH", 16);

  paratorch::models::ModelConfig cfg;  // the demo shape (ModelConfig's defaults, spelled out)
  cfg.name = "gpt"; cfg.n_layers = 4; cfg.d_model = 256; cfg.n_heads = 4; cfg.seq_len = 128; cfg.vocab_size = 256;
  auto model = paratorch::models::make_model(cfg);
  model->initialize(1234);
  auto data = paratorch::data::make_dataset("kjv", cfg, 1234);
  // The trainer's optimizer (src/optim/optimizer.h: fused AdamW, lr 3e-4,
  // weight decay 0.1 on matrices) — what `paratorch train` runs.
  paratorch::optim::NamedTensors named;
  for (const auto& item : model->named_parameters(true)) named.emplace_back(item.key(), item.value());
  auto opt = paratorch::optim::make_optimizer(paratorch::optim::OptimizerOptions{}, named);
  paratorch::DistributedSampler sampler(batch, /*dp_rank=*/0, /*dp_size=*/1);

  Timings t;
  double loss_value = 0;
  for (int s = 0; s < warmup + steps; ++s) {
    auto b = data->train_batch(sampler.local_indices(s));
    auto t0 = Clock::now();
    paratorch::compat::zero_grad_in_place(model->parameters());
    auto loss = model->loss(b);
    auto t_forward = Clock::now();
    loss.backward();
    auto t_backward = Clock::now();
    opt->step(3e-4);
    const double step_ms = ms_since(t0);
    if (std::getenv("BENCH_VERBOSE")) std::printf("  step %d %.1f ms\n", s, step_ms);
    if (s < warmup) continue;
    t.step.push_back(step_ms);
    t.forward.push_back(std::chrono::duration<double, std::milli>(t_forward - t0).count());
    t.backward.push_back(std::chrono::duration<double, std::milli>(t_backward - t_forward).count());
    t.optimizer.push_back(ms_since(t_backward));
    loss_value = loss.item<double>();
  }
  const double med = median(t.step);
  std::printf("bench_train: impl=paratorch median_step_ms=%.1f tokens_per_s=%.0f threads=%d batch=%d steps=%d "
              "final_loss=%.3f omp_wait=%s blas_timeout=%s\n",
              med, batch * cfg.seq_len / med * 1e3, world.threads(), batch, steps, loss_value,
              env_or("OMP_WAIT_POLICY", "default"), env_or("OPENBLAS_THREAD_TIMEOUT", "default"));
  if (env_int("BENCH_PHASES", 0))
    std::printf("bench_train: phases impl=paratorch forward_ms=%.1f backward_ms=%.1f optimizer_ms=%.1f\n",
                median(t.forward), median(t.backward), median(t.optimizer));
  return 0;
}
