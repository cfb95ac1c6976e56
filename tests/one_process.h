// tests/one_process.h — the single-process reference of the engine
// tests: the bundled model trained on the whole global batch per step, one
// backward, with no paratorch parallel code. Every rank can compute it (the
// test models are tiny), so every rank can compare.
#pragma once
#include "data/dataset.h"
#include "models/model.h"
#include "train/config.h"
#include "parallel/grad_clip.h"
#include "optim/optimizer.h"
#include <paratorch/sampler.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace paratorch::train::reference {

/// What a run did: per step the loss and the pre-clip global gradient norm;
/// at the end the parameters (and, for engine runs, the optimizer state).
struct Trajectory {
  std::vector<double> losses, grad_norms;
  std::map<std::string, torch::Tensor> params, state;
};

/// `steps` steps of `c` in one process; `lr_at(step)` gives the learning
/// rate (default: c.optim.lr throughout). Clips as c.optim.grad_clip says.
inline Trajectory one_process(const Config& c, int steps, const std::function<double(int)>& lr_at = nullptr) {
  const auto seed = static_cast<uint64_t>(c.train.seed);
  auto dataset = data::make_dataset(c.data.source, c.model, seed);
  auto model = models::make_model(c.model);
  model->initialize(seed);
  optim::NamedTensors params;
  for (const auto& item : model->named_parameters(true)) params.emplace_back(item.key(), item.value());
  auto optimizer = optim::make_optimizer(c.optim, params);
  DistributedSampler batches(c.data.global_batch, 0, 1);
  Trajectory run;
  for (int s = 0; s < steps; ++s) {
    optim::zero_gradients(params);
    auto loss = model->loss(dataset->train_batch(batches.global_indices(s)));
    loss.backward();
    std::vector<torch::Tensor> tensors;
    for (auto& item : params) tensors.push_back(item.second);
    run.grad_norms.push_back(parallel::clip_grad_norm(tensors, c.optim.grad_clip));
    optimizer->step(lr_at ? lr_at(s) : c.optim.lr);
    run.losses.push_back(loss.item<double>());
  }
  for (auto& [name, p] : params) run.params[name] = p.detach().clone();
  return run;
}

}  // namespace paratorch::train::reference
