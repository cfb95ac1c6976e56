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
// owner counts it), and the stages' sums added over pp. The dp replicas
// hold equal gradients and each reads its 1/dp of them (the sums add over dp).
#include "parallel/pipeline/pipeline_engine.h"

#include "parallel/checkpoint/checkpoint_pieces.h"
#include "parallel/finalize_grads.h"
#include "parallel/grad_norm.h"
#include "parallel/pipeline/pipeline_zero.h"

#include <paratorch/errors.h>

#include <cmath>

namespace paratorch::pipeline {

torch::Tensor PipelineEngine::gather_whole(const std::string& name, const torch::Tensor& on_owner) {
  const int owner = owner_.at(name);
  torch::Tensor t = owner == groups_.coords().pp
                        ? tp_.whole(name, on_owner)
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

// Each stage writes the parameters it owns (a tied copy's owner writes it).
std::optional<std::vector<formats::Piece>> PipelineEngine::checkpoint_pieces(const optim::Optimizer& optimizer) {
  parallel::CheckpointPieces out(tp_, groups_.coords().dp, groups_.layout().dp, groups_.world()->rank());
  for (const auto& name : held_) out.add_parameter(name, trained(name), owner_.at(name) == groups_.coords().pp);
  out.add_optimizer_state(optimizer.local_state());
  return out.take();
}

formats::ShardPlan PipelineEngine::parameters_to_load() {
  formats::ShardPlan plan;
  for (const auto& name : held_) plan[name] = parallel::tp_region(tp_, name);
  return plan;
}

void PipelineEngine::load_full_parameters(const std::map<std::string, torch::Tensor>& tensors) {
  torch::NoGradGuard no_grad;
  for (const auto& name : held_) trained(name).copy_(tp_.local_part(tensors, name, shard_shapes_.at(name)));
  precision_->copy_to_model();
}

optim::NamedTensors PipelineEngine::held_parameters() {
  optim::NamedTensors out;
  for (const auto& name : held_) out.emplace_back(name, trained(name));
  return out;
}

parallel::SumAcross PipelineEngine::grad_norm_across() {
  return [this](double local) {
    return parallel::sum_squares_across(local, tp_.norm_entries(held_parameters(), tied_copies_),
                                        {nullptr, tp_.group(), groups_.pp().get()});
  };
}

// A stage's gradients are whole and averaged over its dp replicas (ZeRO-1
// shards the optimizer alone), so the replicas split the reading as DDP's do.
double PipelineEngine::grad_norm() {
  return std::sqrt(parallel::sum_squares_of(tp_.norm_entries(held_parameters(), tied_copies_),
                                            {nullptr, tp_.group(), groups_.pp().get(), groups_.dp().get()}));
}

// Sequence parallelism: whole parameters applied to this rank's slice of the
// sequence (LayerNorms, wpe) hold partial gradients, summed over tp (every
// tp rank of a stage holds the same names, in the same order). Tied weights:
// the first and last stage each hold a copy with their own share of the
// gradient, summed over the embedding group (both ends walk tied_, sorted).
// A middle stage holds no copy and its embedding group is itself alone.
void PipelineEngine::finalize_gradients() {
  parallel::FinalizeGradients f;
  f.partial_over_tp = tp_.partial_gradients(held_parameters());
  f.tp = tp_.group();
  if (groups_.embedding()->size() > 1)
    for (const auto& name : tied_) f.tied.push_back({{trained(name).grad()}, {}});
  f.tied_ranks = groups_.embedding().get();
  parallel::finalize_gradients(f);
}

std::unique_ptr<optim::Optimizer> PipelineEngine::build_optimizer(const optim::OptimizerOptions& options) {
  // zero = 1: the stage's optimizer state sharded over its dp group (pipeline_zero.h);
  // tp > 1: state gathered over tp so checkpoints hold whole tensors.
  // Mixed precision: the optimizer trains the fp32 masters, may skip (fp16),
  // and rounds the masters into the model after each update.
  auto inner = options_.zero > 0 ? make_zero1_optimizer(options, named_parameters(), groups_.dp())
                                 : optim::make_optimizer(options, named_parameters());
  inner = tp_.with_whole_state(std::move(inner), shard_shapes_);
  return precision_->wrap(std::move(inner), [this] { return may_step(); });
}

}  // namespace paratorch::pipeline
