// src/tensor_parallel/full_tensors.h — whole tensors from tp shards and back,
// for every engine whose model holds tp shards (dp×tp, pp×tp, ZeRO×tp).
//
// Checkpoints, `paratorch verify` and the trainer's optimizer state speak in
// whole, layout-independent tensors; a tp rank holds slices of them
// (ShardSpec). These functions are the one place that converts, so engines
// that compose tp with something else (pipeline stages, ZeRO shards) apply
// them after their own gathering and never re-derive the split.
//
// Example (an engine's full_parameters over tp):
//   std::map<std::string, torch::Tensor> out;
//   for (auto& [name, shard] : my_shards) out[name] = gather_full(shard, specs.at(name), *groups.tp());
#pragma once
#include "tensor_parallel/shard.h"
#include <paratorch/communicator.h>

#include <map>
#include <string>

namespace paratorch::tensor_parallel {

/// The whole tensor of `shard` (CPU, contiguous). Collective over `tp` when
/// `spec` is sharded: every tp rank must call it for the same parameter in
/// the same order. A replicated parameter is returned as a CPU copy.
torch::Tensor gather_full(const torch::Tensor& shard, const ShardSpec& spec, Communicator& tp);

/// Squared gradient norm of the whole model from one tp rank's view:
/// `sharded_sq` (sum of squares of this rank's sharded gradients) is summed
/// over tp; `replicated_sq` (parameters whole on every tp rank, whose
/// gradients are equal there) is counted once, not tp times.
double tp_squared_norm(double sharded_sq, double replicated_sq, Communicator& tp);

/// Sums `partial` gradients over `tp` in place, in one flat all-reduce:
/// replicated parameters used on a slice of the sequence under sequence
/// parallelism (ShardSpec::partial_grad) hold partial sums. Collective: every
/// tp rank passes the same parameters in the same order. Traced as
/// "tp.partial_grads".
void sum_partial_gradients(const std::vector<torch::Tensor>& partial, Communicator& tp);

/// The ShardSpec of the parameter an optimizer-state tensor belongs to:
/// state tensors are named "<parameter>.<kind>" (train/optimizer.h) and have
/// the parameter's shape. Null when `state_name` names no sharded parameter
/// or `sizes` are not the shard's (`whole` = false) / whole tensor's (`whole`
/// = true) shape — scalars such as "step" pass through unchanged.
const ShardSpec* spec_of_state(const std::string& state_name, torch::IntArrayRef sizes, bool whole,
                               const std::map<std::string, ShardSpec>& specs,
                               const std::map<std::string, std::vector<int64_t>>& shard_shapes);

}  // namespace paratorch::tensor_parallel
