// src/verify/equivalence.cpp — see equivalence.h.
#include "verify/equivalence.h"

#include "data/dataset.h"
#include "models/registry.h"
#include "train/engine_factory.h"
#include "train/train_step.h"
#include <paratorch/compat.h>
#include <paratorch/errors.h>
#include <paratorch/sampler.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iterator>
#include <map>

namespace paratorch::verify {
namespace {

/// Relative difference; a NaN on either side counts as infinitely far, so
/// that no max() or comparison below can drop it.
double rel_diff(double a, double ref) {
  const double d = std::abs(a - ref) / std::max(std::abs(ref), 1e-12);
  return std::isnan(d) ? HUGE_VAL : d;
}

double rel_tensor_diff(const torch::Tensor& a, const torch::Tensor& ref) {
  auto denom = std::max(ref.norm().item<double>(), 1e-12);
  const double d = (a - ref).norm().item<double>() / denom;
  return std::isnan(d) ? HUGE_VAL : d;
}

/// The single-process reference: the bundled model as a user would train it
/// in one process, with none of paratorch's parallel machinery.
struct Reference {
  std::shared_ptr<models::BundledModel> model;
  std::unique_ptr<optim::Optimizer> optimizer;
  optim::NamedTensors params;
  std::map<std::string, torch::Tensor> initial;  // how far training moved them

  Reference(const train::Config& config, torch::Device device) : model(models::make_model(config.model)) {
    model->initialize(static_cast<uint64_t>(config.train.seed));
    model->to(device);
    for (const auto& item : model->named_parameters(true)) {
      params.emplace_back(item.key(), item.value());
      initial[item.key()] = item.value().detach().cpu().clone();
    }
    optimizer = optim::make_optimizer(config.optim, params);
  }

  /// One step; returns {loss, global gradient norm before clipping}.
  std::pair<double, double> step(models::Batch batch, torch::Device device, const train::OptimSection& optim) {
    optim::zero_gradients(params);
    auto loss = model->loss({batch.input.to(device), batch.target.to(device)});
    loss.backward();
    std::vector<torch::Tensor> tensors;
    for (auto& [name, p] : params) tensors.push_back(p);
    const double grad_norm = parallel::clip_grad_norm(tensors, optim.grad_clip);
    optimizer->step(optim.lr);
    return {loss.item<double>(), grad_norm};
  }
};

std::string fmt(const char* format, double a, double b = 0, double c = 0, double d = 0) {
  char buf[320];
  std::snprintf(buf, sizeof buf, format, a, b, c, d);
  return buf;
}

/// Every rank's full parameters against rank 0's (collective over `comm`):
/// rank 0 broadcasts each tensor, every rank measures its own difference, and
/// rank 0 gathers the worst of each. A DDP replica that missed an update, or
/// a shard gathered from the wrong rank, differs here even when rank 0's
/// copy equals the reference.
void compare_replicas(Communicator& comm, const std::map<std::string, torch::Tensor>& params, VerifyResult& result) {
  const int n = comm.size();
  auto counts = torch::zeros({n}, torch::kLong);
  comm.all_gather(counts, torch::tensor({static_cast<int64_t>(params.size())}, torch::kLong));
  for (int r = 0; r < n; ++r)
    if (counts[r].item<int64_t>() != counts[0].item<int64_t>())
      throw RuntimeFailure("paratorch verify: rank " + std::to_string(r) + " holds " +
                           std::to_string(counts[r].item<int64_t>()) + " parameters, rank 0 holds " +
                           std::to_string(counts[0].item<int64_t>()));
  double worst = 0;
  int64_t worst_index = 0, index = 0;
  for (const auto& [name, tensor] : params) {  // std::map: the same order on every rank
    auto mine = tensor.detach().to(torch::kCPU).contiguous();
    auto rank0 = comm.rank() == 0 ? mine.clone() : torch::empty_like(mine);
    comm.broadcast(rank0, 0);
    double d = rel_tensor_diff(mine.to(torch::kDouble), rank0.to(torch::kDouble));
    if (d > worst) worst = d, worst_index = index;
    ++index;
  }
  auto all = torch::zeros({2 * n}, torch::kDouble);
  comm.all_gather(all, torch::tensor({worst, static_cast<double>(worst_index)}, torch::kDouble));
  result.replicas = n;
  for (int r = 1; r < n; ++r) {
    const double d = all[2 * r].item<double>();
    if (d <= result.max_rel_replica_diff) continue;
    result.max_rel_replica_diff = d;
    result.replica_rank = r;
    result.replica_param = std::next(params.begin(), static_cast<int64_t>(all[2 * r + 1].item<double>()))->first;
  }
}

/// Rank 0: the final parameters against the reference's, per tensor and, for
/// low precision, as a whole against how far the reference moved them.
void compare_with_reference(const std::map<std::string, torch::Tensor>& layout_params, const Reference& reference,
                            VerifyResult& result) {
  if (reference.params.empty() || layout_params.size() != reference.params.size())
    throw RuntimeFailure("paratorch verify: the layout run has " + std::to_string(layout_params.size()) +
                         " parameters, the reference " + std::to_string(reference.params.size()));
  double off_sq = 0, moved_sq = 0;
  for (const auto& [name, ref_tensor] : reference.params) {
    auto it = layout_params.find(name);
    if (it == layout_params.end())
      throw RuntimeFailure("paratorch verify: the layout run has no parameter '" + name + "'");
    auto ref = ref_tensor.detach().cpu().to(torch::kDouble);
    auto mine = it->second.detach().cpu().to(torch::kDouble);
    double d = rel_tensor_diff(mine, ref);
    if (d >= result.max_rel_param_diff) {
      result.max_rel_param_diff = d;
      result.worst_param = name;
    }
    off_sq += (mine - ref).pow(2).sum().item<double>();
    moved_sq += (ref - reference.initial.at(name).to(torch::kDouble)).pow(2).sum().item<double>();
  }
  result.param_drift = std::sqrt(off_sq) / std::max(std::sqrt(moved_sq), 1e-300);
}

/// Rank 0: every rule of `options` against the measurements in `result`.
void judge(const VerifyOptions& options, VerifyResult& result) {
  auto& f = result.failures;
  const double tol = options.tolerance;
  if (result.losses.size() != static_cast<size_t>(options.steps))
    f.push_back(fmt("%.0f of %.0f steps were compared", static_cast<double>(result.losses.size()), options.steps));
  if (!(result.max_rel_loss_diff <= tol))
    f.push_back(fmt("a step's loss differs from the reference's by %.3e relative (tolerance %.0e)",
                    result.max_rel_loss_diff, tol));
  if (!(result.max_rel_grad_norm_diff <= tol))
    f.push_back(fmt("a step's pre-clip gradient norm differs from the reference's by %.3e relative (tolerance %.0e)",
                    result.max_rel_grad_norm_diff, tol));
  if (options.judge_parameters && !(result.max_rel_param_diff <= tol))
    f.push_back("parameter " + result.worst_param + fmt(" differs from the reference's by %.3e relative (tolerance %.0e)",
                                                        result.max_rel_param_diff, tol));
  if (!(result.max_rel_replica_diff <= kReplicaTolerance))
    f.push_back("rank " + std::to_string(result.replica_rank) + "'s " + result.replica_param +
                fmt(" differs from rank 0's by %.3e relative (replicas must agree within %.0e)",
                    result.max_rel_replica_diff, kReplicaTolerance));
  if (options.min_loss_fall > 0 && !(result.loss_fall >= options.min_loss_fall))
    f.push_back(fmt("the loss fell by %.2f%% over %.0f steps; training must lower it by at least %.2f%%",
                    100 * result.loss_fall, options.steps, 100 * options.min_loss_fall));
  if (options.max_param_drift > 0 && !(result.param_drift <= options.max_param_drift))
    f.push_back(fmt("the parameters are %.3f x ||p_ref - p_init|| from the reference's (bound %.3f)",
                    result.param_drift, options.max_param_drift));
  result.pass = f.empty();
}

}  // namespace

void VerifyOptions::validate() const {
  config.validate();
  if (steps < 1) throw UsageError("paratorch: --steps must be >= 1, got " + std::to_string(steps));
  if (!(tolerance > 0)) throw UsageError("paratorch: VerifyOptions::tolerance must be > 0");
  if (min_loss_fall < 0 || (min_loss_fall > 0 && (min_loss_fall <= tolerance || steps < 2)))
    throw UsageError("paratorch: VerifyOptions::min_loss_fall = " + std::to_string(min_loss_fall) +
                     " must exceed tolerance = " + std::to_string(tolerance) +
                     " (and steps must be >= 2), or a run that does not train could pass");
  if (max_param_drift < 0 || max_param_drift >= 1)
    throw UsageError("paratorch: VerifyOptions::max_param_drift = " + std::to_string(max_param_drift) +
                     " must be in [0, 1): a run that does not train sits at 1");
}

models::ModelConfig small_model(const std::string& name) {
  models::ModelConfig c;
  c.name = name;
  models::model_family(name).small_sizes(c);
  return c;
}

namespace {

/// The family of `verify --model NAME`: one with synthetic data of its own
/// (cnn has only fashion_mnist; `verify --config` reaches it).
const models::ModelFamily& verify_family(const std::string& name) {
  const auto offered = models::model_family_names([](const models::ModelFamily& f) { return !f.verify_source.empty(); });
  if (std::find(offered.begin(), offered.end(), name) != offered.end()) return models::model_family(name);
  std::string list;
  for (const auto& n : offered) list += (list.empty() ? "" : ", ") + n;
  throw UsageError("paratorch verify: unknown model '" + name + "'; valid models: " + list +
                   " (or --config F.toml for any bundled model on its own data)");
}

}  // namespace

train::Config verify_config(const std::string& name) {
  const models::ModelFamily& family = verify_family(name);
  train::Config config;
  static_cast<models::ModelConfig&>(config.model) = small_model(name);
  config.data.source = family.verify_source;
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

std::string VerifyResult::checks_line() const {
  char buf[256];
  std::snprintf(buf, sizeof(buf),
                "checks: max_rel_grad_norm_diff=%.3e replicas=%d max_rel_replica_diff=%.3e loss_fall=%.4f "
                "param_drift=%.3e",
                max_rel_grad_norm_diff, replicas, max_rel_replica_diff, loss_fall, param_drift);
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
  DistributedSampler batches(config.data.global_batch, 0, 1);  // global view; each rank reads its slice

  // The layout run, built and stepped as the trainer does.
  auto engine = train::make_engine(config, groups, models::make_model(config.model), *dataset, world.device());
  auto optimizer = engine->build_optimizer(config.optim);  // ZeRO shards it
  std::unique_ptr<Reference> reference;
  if (is_root) reference = std::make_unique<Reference>(config, world.device());

  if (is_root && progress)
    std::printf("%6s %16s %16s %10s %12s %12s %10s\n", "step", "layout_loss", "reference_loss", "rel_diff",
                "layout_norm", "ref_norm", "rel_diff");
  for (int step = 0; step < options.steps; ++step) {
    const auto ids = batches.global_indices(step);
    const auto taken = train::take_step(*engine, *optimizer, parallel::local_microbatches(*engine, *dataset, ids),
                                        config.optim.lr, config.optim.grad_clip, step + 1);
    if (!is_root) continue;
    const auto [ref_loss, ref_norm] = reference->step(dataset->train_batch(ids), world.device(), config.optim);
    StepLosses s{taken.loss, ref_loss, taken.grad_norm, ref_norm};
    result.losses.push_back(s);
    const double d = rel_diff(s.layout, s.reference);
    const double dn = rel_diff(s.layout_grad_norm, s.reference_grad_norm);
    result.max_rel_loss_diff = std::max(result.max_rel_loss_diff, d);
    result.max_rel_grad_norm_diff = std::max(result.max_rel_grad_norm_diff, dn);
    if (progress)
      std::printf("%6d %16.8f %16.8f %10.3e %12.6f %12.6f %10.3e\n", step, s.layout, s.reference, d,
                  s.layout_grad_norm, s.reference_grad_norm, dn);
  }

  auto layout_params = engine->full_parameters();  // collective: every rank takes part
  compare_replicas(*world.comm(), layout_params, result);  // collective
  if (is_root) {
    compare_with_reference(layout_params, *reference, result);
    const double first = result.losses.front().layout, last = result.losses.back().layout;
    result.loss_fall = (first - last) / std::max(std::abs(first), 1e-12);
    judge(options, result);
  }
  // Every rank learns the verdict, so every rank exits with the same code.
  auto verdict = torch::tensor({result.pass ? 1 : 0}, torch::kInt);
  world.comm()->broadcast(verdict, 0);
  result.pass = verdict.item<int>() == 1;
  if (!is_root) result.losses.resize(static_cast<size_t>(options.steps));
  return result;
}

}  // namespace paratorch::verify
