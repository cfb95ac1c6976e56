// tests/engine_beside_reference.h — an engine stepped as the trainer steps
// it (take_step on the micro-batches the trainer reads), beside the same
// model stepped in one process on the whole global batch: each step's loss
// and pre-clip global gradient norm must agree at 1e-5 relative. The
// engine-equivalence tests that go on to compare parameters, optimizer state
// or validation share it.
#pragma once
#include "data/dataset.h"
#include "models/model.h"
#include "optim/optimizer.h"
#include "parallel/engine.h"
#include "parallel/grad_clip.h"
#include "train/config.h"
#include "train/train_step.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

namespace paratorch::train::reference {

/// Momentum SGD at lr 0.05 without weight decay, clipping at `grad_clip`:
/// the update is linear in the gradients, so a layout's rounding does not
/// grow step by step (see verify/equivalence.h).
inline void use_linear_sgd(Config& c, double grad_clip) {
  c.optim.name = "sgd";
  c.optim.lr = 0.05;
  c.optim.weight_decay = 0.0;
  c.optim.grad_clip = grad_clip;
}

/// ||a - b|| / ||b|| (b's norm floored at 1e-12).
inline double relative_difference(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).norm().item<double>() / std::max(b.norm().item<double>(), 1e-12);
}

/// The one-process model after the steps, its parameters by name and its optimizer.
struct SteppedReference {
  std::shared_ptr<models::BundledModel> model;
  optim::NamedTensors params;
  std::unique_ptr<optim::Optimizer> optimizer;
};

/// `steps` steps of `engine` + `optimizer` and of a fresh `c.model` in one
/// process (initialized from c.train.seed, SGD/AdamW as c.optim says, lr
/// c.optim.lr), on global batches [step·B, (step+1)·B) of `dataset`.
/// `binding_clip` > 0 also requires each reference norm above it (a clip
/// that does not bind tests nothing). Checks the parameter count first.
inline SteppedReference step_beside_reference(parallel::Engine& engine, optim::Optimizer& optimizer,
                                              const data::Dataset& dataset, const Config& c, int steps,
                                              double binding_clip) {
  SteppedReference ref{models::make_model(c.model), {}, nullptr};
  ref.model->initialize(static_cast<uint64_t>(c.train.seed));
  for (const auto& item : ref.model->named_parameters(true)) ref.params.emplace_back(item.key(), item.value());
  ref.optimizer = optim::make_optimizer(c.optim, ref.params);
  std::vector<torch::Tensor> tensors;
  int64_t count = 0;
  for (const auto& [name, p] : ref.params) tensors.push_back(p), count += p.numel();
  EXPECT_EQ(engine.parameter_count(), count);

  for (int step = 0; step < steps; ++step) {
    std::vector<int64_t> ids;
    for (int64_t i = 0; i < c.data.global_batch; ++i) ids.push_back(step * c.data.global_batch + i);
    const StepResult got = take_step(engine, optimizer, parallel::local_microbatches(engine, dataset, ids), c.optim.lr,
                                     c.optim.grad_clip, step + 1);

    optim::zero_gradients(ref.params);
    auto ref_loss = ref.model->loss(dataset.train_batch(ids));
    ref_loss.backward();
    const double ref_norm = parallel::clip_grad_norm(tensors, c.optim.grad_clip);  // before clipping
    ref.optimizer->step(c.optim.lr);
    EXPECT_NEAR(got.loss, ref_loss.item<double>(), 1e-5 * std::abs(ref_loss.item<double>())) << "step " << step;
    EXPECT_NEAR(got.grad_norm, ref_norm, 1e-5 * ref_norm) << "step " << step << ": pre-clip gradient norm";
    if (binding_clip > 0) EXPECT_GT(ref_norm, binding_clip) << "the clip must bind for this case to test it";
  }
  return ref;
}

/// The engine's whole parameters equal the reference's at 1e-5 relative.
inline void expect_full_parameters_match(parallel::Engine& engine, const SteppedReference& ref) {
  auto full = engine.full_parameters();
  ASSERT_EQ(full.size(), ref.params.size());
  for (const auto& [name, p] : ref.params) {
    ASSERT_TRUE(full.count(name)) << name;
    ASSERT_EQ(full[name].sizes(), p.sizes()) << name;
    EXPECT_LT(relative_difference(full[name], p.detach()), 1e-5) << name;
  }
}

}  // namespace paratorch::train::reference
