// src/parallel/zero/zero_engine_tp.cpp — ZeroEngine's tensor-parallel half (ZeRO × tp).
//
// With tp > 1 the model holds this rank's tp shards (make_model with the tp
// group) and ZeroEngine's flat units hold those shards, sharded over the dp
// group only (ZeRO shards across the dp group of each model-parallel shard,
// Rajbhandari et al. 2019 §7). The tp ranks of one replica have identical
// unit layouts (same names, same shard shapes), so the piece at a given
// shard offset is the same parameter's part on each of them. What tp adds:
//  - loss: gpt's logits are this rank's vocabulary slice; its criterion is
//    the vocab-parallel cross-entropy (collective over tp);
//  - sequence parallelism: replicated parameters used on a slice of the
//    sequence (ShardSpec::partial_grad) hold partial gradients; their pieces
//    of the dp-reduced gradient shard are summed over tp (the dp average and
//    the tp sum commute, both being linear);
//  - clipping: sharded parameters' squares summed over tp, replicated ones
//    counted once (parallel/grad_norm.h, from zero_engine.cpp);
//  - whole tensors for checkpoints and verify: gather over dp (as at tp = 1),
//    then tensor_parallel::gather_full over tp; loading slices with
//    ShardSpec::slice; optimizer state the same way (TensorParallelOptimizer).
#include "parallel/finalize_grads.h"
#include "tensor_parallel/full_tensors.h"
#include "parallel/tensor_parallel/tensor_parallel_optimizer.h"
#include "parallel/zero/zero_engine.h"
#include "parallel/zero/zero_unit.h"
#include <paratorch/errors.h>

namespace paratorch::train {

// ZeRO has no tied copies across ranks (every replica holds the whole
// model); what is left after the dp reduce-scatter is the sequence-parallel
// partial sum of this rank's dp-shard pieces.
void ZeroEngine::finalize_gradients() {
  if (!tensor_parallel()) return;
  parallel::FinalizeGradients f;
  for (const auto& [name, piece] : pieces_.tensors)
    if (specs_.at(name).partial_grad) f.partial_over_tp.push_back(piece.grad());
  f.tp = groups_.tp().get();
  parallel::finalize_gradients(f);  // the same names on every tp rank: their layouts are identical
}

// Sorted map order: every tp rank gathers the same parameters in the same order.
std::map<std::string, torch::Tensor> ZeroEngine::gather_over_tp(std::map<std::string, torch::Tensor> shards) {
  for (auto& [name, t] : shards) t = tensor_parallel::gather_full(t, specs_.at(name), *groups_.tp());
  return shards;
}

// `param`'s tensor from a whole-tensor map, checked and cut to this rank's tp shard.
torch::Tensor ZeroEngine::local_part(const std::map<std::string, torch::Tensor>& tensors,
                                     const zero::FlatParam& param) const {
  auto it = tensors.find(param.name);
  if (it == tensors.end())
    throw RuntimeFailure("paratorch: checkpoint has no tensor '" + param.name + "' for this model");
  const auto& spec = specs_.at(param.name);
  const auto full_shape = spec.full_shape(param.shape);
  if (it->second.sizes() != torch::IntArrayRef(full_shape))
    throw RuntimeFailure("paratorch: checkpoint tensor '" + param.name + "' has shape " +
                         c10::str(it->second.sizes()) + " but the model needs " + c10::str(full_shape));
  return spec.sharded() ? spec.slice(it->second) : it->second;
}

std::unique_ptr<Optimizer> ZeroEngine::wrap_for_tp(std::unique_ptr<Optimizer> sharded) const {
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& u : units_)
    for (const auto& p : u->layout->params()) shapes[p.name] = p.shape;
  return with_whole_tp_state(std::move(sharded), specs_, std::move(shapes), groups_.tp());
}

}  // namespace paratorch::train
