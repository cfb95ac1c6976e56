// src/parallel/tensor_parallel/tp_shards.h — what tensor parallelism adds to
// any engine whose model holds tp shards, as one component every engine
// composes (data-parallel, ZeRO, pipeline) instead of each carrying its own
// tp half.
//
// A model built with the tp group (make_model with a TpContext) holds this
// rank's slice of each sharded parameter; ShardSpec says how each one is
// split. Given those specs and the tp group, this component answers the
// questions an engine has about its parameters, and at tp = 1 (every spec
// replicated, a group of one) each answer is the identity:
//  - finalize: which gradients are partial over tp (sequence parallelism's
//    replicated parameters used on a slice of the sequence; Korthikanti et
//    al. 2022), for parallel::finalize_gradients;
//  - the gradient norm: each parameter's NormEntry (sharded squares summed
//    over tp, replicated ones counted once; parallel/grad_norm.h);
//  - whole tensors for checkpoints and verify: gathered over tp by
//    ShardSpec, sliced back on load, with the whole shape checked;
//  - the parameter count of the whole model, and the optimizer wrapped so
//    its state also travels as whole tensors.
// Collective calls (whole, the optimizer's state) must be made by every tp
// rank for the same names in the same order: the tp ranks of one replica
// hold the same parameter names.
//
// Example (an engine over a model built with groups.tp()):
//   parallel::TpShards tp(model->shard_specs(), groups.tp());
//   parallel::FinalizeGradients f;
//   f.partial_over_tp = tp.partial_gradients(named_parameters());
//   f.tp = tp.group();
//   parallel::finalize_gradients(f);
//   auto whole = tp.whole(name, shard);                       // collective over tp
#pragma once
#include "optim/optimizer.h"
#include "parallel/grad_norm.h"
#include "tensor_parallel/shard.h"
#include <paratorch/communicator.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace paratorch::parallel {

class TpShards {
 public:
  /// `specs`: every parameter's split (a model's shard_specs()); `tp`: the
  /// group the sharded ones are split over (one rank: nothing is split).
  TpShards(std::map<std::string, tensor_parallel::ShardSpec> specs, std::shared_ptr<Communicator> tp);

  int size() const { return tp_->size(); }
  Communicator* group() const { return tp_.get(); }
  const tensor_parallel::ShardSpec& spec(const std::string& name) const;

  /// The gradients of `params` that are partial sums over tp (to be summed
  /// by parallel::finalize_gradients); empty without sequence parallelism.
  std::vector<torch::Tensor> partial_gradients(const optim::NamedTensors& params) const;
  /// One NormEntry per parameter of `params`, its gradient and split;
  /// names in `tied_copies` are copies whose owner counts them.
  std::vector<NormEntry> norm_entries(const optim::NamedTensors& params,
                                      const std::set<std::string>& tied_copies = {}) const;

  /// The whole tensor of parameter `name` from this rank's `shard` (CPU).
  /// Collective over tp when the parameter is sharded.
  torch::Tensor whole(const std::string& name, const torch::Tensor& shard) const;
  /// Every tensor of `shards` made whole, in the map's sorted order.
  std::map<std::string, torch::Tensor> whole(std::map<std::string, torch::Tensor> shards) const;
  /// This rank's part of parameter `name` (shaped `shard_shape` here) from a
  /// map of whole tensors, or of this rank's shards (a sharded checkpoint
  /// read for this rank); RuntimeFailure naming the tensor when it is
  /// missing or its shape is neither.
  torch::Tensor local_part(const std::map<std::string, torch::Tensor>& tensors, const std::string& name,
                           torch::IntArrayRef shard_shape) const;
  /// Elements of the whole parameter `name` whose shard here has `shard_numel`.
  int64_t whole_numel(const std::string& name, int64_t shard_numel) const;

  /// `inner` with its state gathered over tp on save and sliced on load
  /// (TensorParallelOptimizer), or `inner` itself at tp = 1.
  std::unique_ptr<optim::Optimizer> with_whole_state(std::unique_ptr<optim::Optimizer> inner,
                                                     std::map<std::string, std::vector<int64_t>> shard_shapes) const;

  /// "tensor parallel: tp=N[ with sequence parallelism]" or "" at tp = 1.
  std::string describe() const;

 private:
  std::map<std::string, tensor_parallel::ShardSpec> specs_;
  std::shared_ptr<Communicator> tp_;
};

}  // namespace paratorch::parallel
