// src/parallel/pipeline/pipeline_state.cpp — PipelineEngine's whole-model views: full
// parameters and optimizer state for checkpoints and verify, loading them
// back, the facts the finalize step and the global gradient norm need
// (parallel/finalize_grads.h, parallel/grad_norm.h), and the optimizer.
//
// A parameter lives on one pipeline stage (its owner; tied weights have a
// copy on the last stage too) and, with tp > 1, as tp shards across that
// stage's tp ranks (tensor_parallel/shard.h). A whole tensor is therefore
// made in two hops: the owner's tp ranks gather their shards
// (tensor_parallel::gather_full), then each of them broadcasts the whole
// tensor over its pp group (same dp and tp coordinates), so every rank ends
// with it. Every rank walks the parameters in the same model order, so the
// gathers and broadcasts pair up. dp replicas are identical: one pipeline
// per replica does the same work and needs no cross-replica traffic.
//
// The global gradient norm (for clipping, Megatron-LM's rule): a stage's
// sharded gradients' squares are summed over tp, its replicated parameters
// (LayerNorms, biases of row-parallel layers, wpe) counted once since they are
// equal on every tp rank, the tied copy on the last stage not at all (its
// owner counts it), and the stages' sums added over pp.
#include "parallel/finalize_grads.h"
#include "parallel/grad_norm.h"
#include "tensor_parallel/full_tensors.h"
#include "parallel/pipeline/pipeline_engine.h"
#include "optim/mixed_precision_optimizer.h"
#include "parallel/pipeline/pipeline_zero.h"
#include "parallel/tensor_parallel/tensor_parallel_optimizer.h"

#include <paratorch/errors.h>

namespace paratorch::train {

torch::Tensor PipelineEngine::gather_whole(const std::string& name, const torch::Tensor& on_owner) {
  const int owner = owner_.at(name);
  torch::Tensor t = owner == groups_.coords().pp
                        ? tensor_parallel::gather_full(on_owner, specs_.at(name), *groups_.tp())
                        : torch::empty(shapes_.at(name), torch::TensorOptions().dtype(dtypes_.at(name)));
  groups_.pp()->broadcast(t, owner);
  return t;
}

std::map<std::string, torch::Tensor> PipelineEngine::full_parameters() {
  std::map<std::string, torch::Tensor> out;
  for (const auto& name : order_) out[name] = gather_whole(name, trained(name));  // fp32 masters in mixed precision
  return out;
}

// State tensors are named "<parameter>.<kind>" with the parameter's shape
// (optimizer.h); every stage runs the same optimizer, so the kinds found
// for this rank's parameters are everyone's. `local` holds whole tensors
// already (with_whole_tp_state's optimizer gathered them over tp), so each one is
// only broadcast from its owning stage.
std::map<std::string, torch::Tensor> PipelineEngine::full_optimizer_state(
    const std::map<std::string, torch::Tensor>& local) {
  std::set<std::string> kinds;
  if (held_.empty()) throw RuntimeFailure("paratorch: pipeline stage " + std::to_string(groups_.coords().pp) + " holds no parameters");
  const std::string& probe = held_.front();
  for (const auto& [key, tensor] : local)
    if (key.size() > probe.size() + 1 && key.compare(0, probe.size() + 1, probe + ".") == 0)
      kinds.insert(key.substr(probe.size() + 1));
  std::map<std::string, torch::Tensor> out = local;  // "step" and anything global as they are
  const int me = groups_.coords().pp;
  for (const auto& name : order_)
    for (const auto& kind : kinds) {
      const std::string key = name + "." + kind;
      const int owner = owner_.at(name);
      torch::Tensor t = owner == me ? local.at(key).detach().cpu().clone()
                                    : torch::empty(shapes_.at(name), torch::TensorOptions().dtype(dtypes_.at(name)));
      groups_.pp()->broadcast(t, owner);
      out[key] = t;
    }
  return out;
}

void PipelineEngine::load_full_parameters(const std::map<std::string, torch::Tensor>& tensors) {
  torch::NoGradGuard no_grad;
  for (const auto& name : held_) {
    auto it = tensors.find(name);
    if (it == tensors.end()) throw RuntimeFailure("paratorch: checkpoint has no tensor '" + name + "' for this model");
    if (it->second.sizes() != torch::IntArrayRef(shapes_.at(name)))
      throw RuntimeFailure("paratorch: checkpoint tensor '" + name + "' has shape " + c10::str(it->second.sizes()) +
                           " but the model needs " + c10::str(shapes_.at(name)));
    trained(name).copy_(specs_.at(name).slice(it->second));
  }
  if (masters_) masters_->copy_to_model();
}

SumAcross PipelineEngine::grad_norm_across() {
  return [this](double local) {
    std::vector<parallel::NormEntry> entries;
    for (const auto& name : held_) entries.push_back({trained(name).grad(), specs_.at(name), tied_copies_.count(name) > 0});
    return parallel::sum_squares_across(local, entries, {nullptr, groups_.tp().get(), groups_.pp().get()});
  };
}

// Sequence parallelism: whole parameters applied to this rank's slice of the
// sequence (LayerNorms, wpe) hold partial gradients, summed over tp (every
// tp rank of a stage holds the same names, in the same order). Tied weights:
// the first and last stage each hold a copy with their own share of the
// gradient, summed over the embedding group (both ends walk tied_, sorted).
// A middle stage holds no copy and its embedding group is itself alone.
void PipelineEngine::finalize_gradients() {
  parallel::FinalizeGradients f;
  for (const auto& name : held_)
    if (specs_.at(name).partial_grad) f.partial_over_tp.push_back(trained(name).grad());
  f.tp = groups_.tp().get();
  if (groups_.embedding()->size() > 1)
    for (const auto& name : tied_) f.tied.push_back({{trained(name).grad()}, {}});
  f.tied_ranks = groups_.embedding().get();
  parallel::finalize_gradients(f);
}

std::unique_ptr<Optimizer> PipelineEngine::build_optimizer(const OptimizerOptions& options) {
  // zero = 1: the stage's optimizer state sharded over its dp group (pipeline_zero.h);
  // tp > 1: state gathered over tp so checkpoints hold whole tensors.
  // Mixed precision: the optimizer trains the fp32 masters, may skip (fp16),
  // and rounds the masters into the model after each update.
  auto inner = options_.zero > 0 ? make_zero1_optimizer(options, named_parameters(), groups_.dp(), groups_.coords().dp)
                                 : make_optimizer(options, named_parameters());
  inner = with_whole_tp_state(std::move(inner), specs_, shard_shapes_, groups_.tp());
  if (!masters_) return inner;
  return std::make_unique<MixedPrecisionOptimizer>(
      std::move(inner), [this] { return may_step(); }, [this] { masters_->copy_to_model(); });
}

}  // namespace paratorch::train
