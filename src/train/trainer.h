// src/train/trainer.h — the training loop behind `paratorch train`.
//
// One step, top to bottom (train_step.cpp, take_step):
//   lr = warm-up/cosine(step)                    (lr_schedule.h)
//   ids = the global batch of this step           (DistributedSampler)
//   loss = engine.forward_backward(ids)           (layout-specific: engine.h)
//   norm = global_grad_norm(params)               (grad_clip.h)
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

class Trainer {
 public:
  /// [parallel] mode "ps" with staleness != 0 and "hogwild" do not step
  /// every rank together: run() hands them to their own runners
  /// (src/train/async_runner.h). Sync layouts and ps with staleness 0 run
  /// this loop over their engine (make_engine).
  Trainer(World& world, Config config);
  ~Trainer();
  /// Runs to config.train.steps (from `resume_dir`'s step when given).
  TrainResult run(const std::string& resume_dir = "");

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;  // ranks that step together
  World& world_;
  std::unique_ptr<Config> async_config_;  // the other modes
};

/// Peak resident memory of this process in MiB (getrusage).
double peak_rss_mb();

}  // namespace paratorch::train
