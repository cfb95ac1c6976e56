// src/verify/equivalence.cpp — see equivalence.h.
#include "verify/equivalence.h"

#include "data/dataset.h"
#include "train/engine.h"
#include "train/train_step.h"
#include <paratorch/compat.h>
#include <paratorch/errors.h>
#include <paratorch/sampler.h>

#include <cmath>
#include <cstdio>

namespace paratorch::verify {
namespace {

double rel_diff(double a, double ref) { return std::abs(a - ref) / std::max(std::abs(ref), 1e-12); }

double rel_tensor_diff(const torch::Tensor& a, const torch::Tensor& ref) {
  auto denom = std::max(ref.norm().item<double>(), 1e-12);
  return (a - ref).norm().item<double>() / denom;
}

/// The single-process reference: the bundled model as a user would train it
/// in one process, with none of paratorch's parallel machinery.
struct Reference {
  std::shared_ptr<models::BundledModel> model;
  std::unique_ptr<train::Optimizer> optimizer;
  train::NamedTensors params;

  Reference(const train::Config& config, torch::Device device) : model(models::make_model(config.model)) {
    model->initialize(static_cast<uint64_t>(config.train.seed));
    model->to(device);
    for (const auto& item : model->named_parameters(true)) params.emplace_back(item.key(), item.value());
    optimizer = train::make_optimizer(config.optim, params);
  }

  double step(models::Batch batch, torch::Device device, const train::OptimSection& optim) {
    train::zero_gradients(params);
    auto loss = model->loss({batch.input.to(device), batch.target.to(device)});
    loss.backward();
    std::vector<torch::Tensor> tensors;
    for (auto& [name, p] : params) tensors.push_back(p);
    train::clip_grad_norm(tensors, optim.grad_clip);
    optimizer->step(optim.lr);
    return loss.item<double>();
  }
};

}  // namespace

void VerifyOptions::validate() const {
  config.validate();
  if (steps < 1) throw UsageError("paratorch: --steps must be >= 1, got " + std::to_string(steps));
  if (!(tolerance > 0)) throw UsageError("paratorch: verify tolerance must be > 0");
}

models::ModelConfig small_model(const std::string& name) {
  models::ModelConfig c;
  c.name = name;
  if (name == "gpt") {
    c.n_layers = 2; c.d_model = 64; c.n_heads = 4; c.seq_len = 32; c.vocab_size = 256;
  } else if (name == "mf") {
    c.n_users = 64; c.n_items = 48; c.n_factors = 8;
  } else {
    c.n_layers = 2; c.d_model = 64; c.d_in = 32; c.n_classes = 10;
  }
  return c;
}

train::Config verify_config(const std::string& name) {
  train::Config config;
  static_cast<models::ModelConfig&>(config.model) = small_model(name);
  config.data.source = name == "mf" ? "mf_synthetic" : "synthetic";
  config.data.global_batch = 16;
  config.optim.name = "sgd";
  config.optim.lr = 0.01;
  config.optim.weight_decay = 0.0;
  config.optim.warmup_steps = 0;
  config.optim.grad_clip = 1.0;
  return config;
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
  const train::Config& config = options.config;
  const auto& par = config.parallel;
  VerifyResult result;
  ProcessGroups groups(world.comm(), Layout{par.dp, par.pp, par.tp});
  result.layout = groups.layout();
  const bool is_root = world.rank() == 0;
  const auto seed = static_cast<uint64_t>(config.train.seed);
  auto dataset = data::make_dataset(config.data.source, config.model, seed);  // as the trainer
  DistributedSampler batches(config.data.global_batch, 0, 1);  // global view; engines take their slice

  // The layout run, built and stepped as the trainer does.
  auto engine = train::make_engine(config, groups, models::make_model(config.model), *dataset, world.device());
  auto optimizer = engine->build_optimizer(config.optim);  // ZeRO shards it
  std::unique_ptr<Reference> reference;
  if (is_root) reference = std::make_unique<Reference>(config, world.device());

  if (is_root && progress) std::printf("%6s %16s %16s %12s\n", "step", "layout_loss", "reference_loss", "rel_diff");
  for (int step = 0; step < options.steps; ++step) {
    const auto ids = batches.global_indices(step);
    double loss = train::take_step(*engine, *optimizer, ids, config.optim.lr, config.optim.grad_clip, step + 1).loss;
    if (!is_root) continue;
    StepLosses s{loss, reference->step(dataset->train_batch(ids), world.device(), config.optim)};
    result.losses.push_back(s);
    double d = rel_diff(s.layout, s.reference);
    result.max_rel_loss_diff = std::max(result.max_rel_loss_diff, d);
    if (progress) std::printf("%6d %16.8f %16.8f %12.3e\n", step, s.layout, s.reference, d);
  }

  auto layout_params = engine->full_parameters();  // collective: every rank takes part
  if (is_root) {
    for (const auto& [name, ref] : reference->params) {
      auto it = layout_params.find(name);
      if (it == layout_params.end())
        throw RuntimeFailure("paratorch verify: the layout run has no parameter '" + name + "'");
      double d = rel_tensor_diff(it->second.detach().cpu(), ref.detach().cpu());
      if (d >= result.max_rel_param_diff) {
        result.max_rel_param_diff = d;
        result.worst_param = name;
      }
    }
    result.pass = result.max_rel_loss_diff <= options.tolerance &&
                  (!options.judge_parameters || result.max_rel_param_diff <= options.tolerance);
  }
  // Every rank learns the verdict, so every rank exits with the same code.
  auto verdict = torch::tensor({result.pass ? 1 : 0}, torch::kInt);
  world.comm()->broadcast(verdict, 0);
  result.pass = verdict.item<int>() == 1;
  if (!is_root) result.losses.resize(static_cast<size_t>(options.steps));
  return result;
}

}  // namespace paratorch::verify
