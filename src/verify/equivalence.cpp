// src/verify/equivalence.cpp — see equivalence.h.
#include "verify/equivalence.h"

#include "data/synthetic.h"
#include <paratorch/compat.h>
#include <paratorch/ddp.h>
#include <paratorch/errors.h>
#include <paratorch/sampler.h>

#include <cmath>
#include <cstdio>
#include <sstream>

namespace paratorch::verify {
namespace {

double rel_diff(double a, double ref) { return std::abs(a - ref) / std::max(std::abs(ref), 1e-12); }

double rel_tensor_diff(const torch::Tensor& a, const torch::Tensor& ref) {
  auto denom = std::max(ref.norm().item<double>(), 1e-12);
  return (a - ref).norm().item<double>() / denom;
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(torch::nn::Module& m, const VerifyOptions& o) {
  if (o.optimizer == "adamw")
    return std::make_unique<torch::optim::AdamW>(
        m.parameters(), torch::optim::AdamWOptions(o.lr).weight_decay(o.weight_decay));
  return std::make_unique<torch::optim::SGD>(
      m.parameters(), torch::optim::SGDOptions(o.lr).momentum(0.9).weight_decay(o.weight_decay));
}

/// One optimizer step; returns the local mean loss.
double train_step(models::BundledModel& model, torch::optim::Optimizer& opt, const models::Batch& b) {
  compat::zero_grad_in_place(model.parameters());
  auto loss = model.loss(b);
  loss.backward();
  opt.step();
  return loss.item<double>();
}

}  // namespace

void VerifyOptions::validate() const {
  model.validate();
  if (steps < 1) throw UsageError("paratorch: --steps must be >= 1, got " + std::to_string(steps));
  if (global_batch < 1)
    throw UsageError("paratorch: --global-batch must be >= 1, got " + std::to_string(global_batch));
  if (!(lr > 0)) throw UsageError("paratorch: --lr must be > 0, got " + std::to_string(lr));
  if (!(bucket_mb > 0)) throw UsageError("paratorch: --bucket-mb must be > 0, got " + std::to_string(bucket_mb));
  if (optimizer != "sgd" && optimizer != "adamw")
    throw UsageError("paratorch: unknown optimizer '" + optimizer + "'; valid: sgd, adamw");
  if (layout.pp != 1 || layout.tp != 1)
    throw UsageError("paratorch: verify supports data-parallel layouts (pp=1, tp=1) in this "
                     "version; got " + layout.to_string());
}

models::ModelConfig small_model(const std::string& name) {
  models::ModelConfig c;
  c.name = name;
  if (name == "gpt") {
    c.n_layers = 2; c.d_model = 64; c.n_heads = 4; c.seq_len = 32; c.vocab_size = 256;
  } else {
    c.n_layers = 2; c.d_model = 64; c.d_in = 32; c.n_classes = 10;
  }
  return c;
}

std::string VerifyResult::summary_line() const {
  char buf[256];
  std::snprintf(buf, sizeof(buf), "verify: layout=%s steps=%zu max_rel_loss_diff=%.3e max_rel_param_diff=%.3e %s",
                layout.to_string().c_str(), losses.size(), max_rel_loss_diff, max_rel_param_diff,
                pass ? "PASS" : "FAIL");
  return buf;
}

VerifyResult run_equivalence(World& world, const VerifyOptions& options, bool progress) {
  options.validate();
  VerifyResult result;
  ProcessGroups groups(world.comm(), options.layout);
  result.layout = groups.layout();
  const bool is_root = world.rank() == 0;
  const uint64_t data_seed = derive_seed(options.seed, "data");
  DistributedSampler sampler(options.global_batch, groups.coords().dp, groups.layout().dp);

  // The layout run: every rank builds the model from the same full-shape
  // initialization and trains under DDP on its slice of each global batch.
  auto model = models::make_model(options.model);
  model->initialize(options.seed);
  model->to(world.device());
  DDPOptions ddp_options;
  ddp_options.bucket_mb = options.bucket_mb;
  DistributedDataParallel ddp(model, groups.dp(), ddp_options);
  auto opt = make_optimizer(*model, options);

  // The reference: one process, whole model, whole global batch (rank 0).
  std::shared_ptr<models::BundledModel> reference;
  std::unique_ptr<torch::optim::Optimizer> ref_opt;
  if (is_root) {
    reference = models::make_model(options.model);
    reference->initialize(options.seed);
    reference->to(world.device());
    ref_opt = make_optimizer(*reference, options);
  }

  if (is_root && progress) std::printf("%6s %16s %16s %12s\n", "step", "layout_loss", "reference_loss", "rel_diff");
  for (int step = 0; step < options.steps; ++step) {
    auto local = data::synthetic_batch(options.model, sampler.local_indices(step), data_seed);
    local.input = local.input.to(world.device());
    local.target = local.target.to(world.device());
    double local_loss = train_step(*model, *opt, local);
    // The global loss is the mean over the global batch: average the replicas' means.
    auto loss = torch::tensor({local_loss}, torch::kDouble);
    groups.dp()->all_reduce(loss, ReduceOp::kAvg);
    if (!is_root) continue;
    auto full = data::synthetic_batch(options.model, sampler.global_indices(step), data_seed);
    full.input = full.input.to(world.device());
    full.target = full.target.to(world.device());
    StepLosses s{loss.item<double>(), train_step(*reference, *ref_opt, full)};
    result.losses.push_back(s);
    double d = rel_diff(s.layout, s.reference);
    result.max_rel_loss_diff = std::max(result.max_rel_loss_diff, d);
    if (progress) std::printf("%6d %16.8f %16.8f %12.3e\n", step, s.layout, s.reference, d);
  }

  if (is_root) {
    auto ref_params = reference->named_parameters(true);
    for (const auto& item : model->named_parameters(true)) {
      double d = rel_tensor_diff(item.value().detach().cpu(), ref_params[item.key()].detach().cpu());
      if (d >= result.max_rel_param_diff) {
        result.max_rel_param_diff = d;
        result.worst_param = item.key();
      }
    }
    result.pass = result.max_rel_loss_diff <= options.tolerance &&
                  result.max_rel_param_diff <= options.tolerance;
  }
  // Every rank learns the verdict, so every rank exits with the same code.
  auto verdict = torch::tensor({result.pass ? 1 : 0}, torch::kInt);
  world.comm()->broadcast(verdict, 0);
  result.pass = verdict.item<int>() == 1;
  if (!is_root) result.losses.resize(static_cast<size_t>(options.steps));
  return result;
}

}  // namespace paratorch::verify
