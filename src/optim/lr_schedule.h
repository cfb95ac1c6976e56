// src/optim/lr_schedule.h — learning rate per step: linear warm-up, then
// cosine decay to min_lr (GPT-2/nanoGPT practice; min_lr = lr / 10).
//   step < warmup:  lr * (step + 1) / (warmup + 1)
//   after:          min_lr + 0.5 * (1 + cos(pi * progress)) * (lr - min_lr),
//                   progress = (step - warmup) / (total - warmup)
#pragma once
#include <cstdint>

#include <torch/torch.h>

namespace paratorch::optim {

struct LrSchedule {
  double lr = 3e-4;
  int64_t warmup_steps = 10;
  int64_t total_steps = 100;
  double min_ratio = 0.1;
  double at(int64_t step) const;
};

/// Sets every param group's learning rate (AdamW and SGD).
void set_learning_rate(torch::optim::Optimizer& optimizer, double lr);

}  // namespace paratorch::optim
