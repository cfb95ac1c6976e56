// src/train/trainer.h — `paratorch train`: a config's runner (how its
// steps are taken) driven by the one training loop (run_loop.h).
//
// One synchronous step, top to bottom (train_step.cpp, take_step):
//   lr = warm-up/cosine(step)                    (lr_schedule.h)
//   ids = the global batch of this step           (DistributedSampler)
//   loss = engine.forward_backward(ids)           (layout-specific: engine.h)
//   norm = engine.grad_norm()                     (grad_norm.h's counting rules)
//   optimizer.step(lr, clip_coefficient(norm, grad_clip))  (AdamW or SGD+momentum;
//                                                 the clip folded into the update)
// then metrics.jsonl / progress / validation / checkpoints on schedule.
// At the end: loss.svg, trace.json, the final checkpoint, a text sample for
// gpt, and the summary line (docs/training.md) on stdout.
#pragma once
#include "train/config.h"
#include "parallel/engine.h"
#include <paratorch/world.h>

#include <memory>
#include <string>
#include <vector>

namespace paratorch::train {

struct TrainResult {
  int64_t steps = 0;
  double final_loss = 0;
  double mean_step_ms = 0;
  double throughput = 0;
  std::string unit;
  double peak_rss_mb = 0;
  /// "train: steps=N final_loss=X mean_step_ms=Y throughput=Z unit=... peak_rss_mb=W"
  std::string summary_line() const;
};

class StepRunner;

class Trainer {
 public:
  /// Sync layouts and ps with staleness 0 take each step through their
  /// engine (make_engine); "hogwild" through its threads (hogwild_runner.h);
  /// both run the training loop (run_loop.h). The asynchronous parameter
  /// server (ps, staleness != 0) runs its servers and workers (ps_trainer.h).
  Trainer(World& world, Config config);
  ~Trainer();
  /// Runs to config.train.steps (from `resume_dir`'s step when given).
  TrainResult run(const std::string& resume_dir = "");

 private:
  World& world_;
  std::unique_ptr<StepRunner> runner_;
  std::unique_ptr<Config> async_config_;  // the asynchronous parameter server
};

/// Peak resident memory of this process in MiB (getrusage).
double peak_rss_mb();

}  // namespace paratorch::train
