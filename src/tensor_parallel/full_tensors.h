// src/tensor_parallel/full_tensors.h — whole tensors from tp shards and back,
// for every engine whose model holds tp shards (dp×tp, pp×tp, ZeRO×tp).
//
// Checkpoints, `paratorch verify` and the trainer's optimizer state speak in
// whole, layout-independent tensors; a tp rank holds slices of them
// (ShardSpec). These functions are the one place that converts, so engines
// that compose tp with something else (pipeline stages, ZeRO shards) apply
// them after their own gathering and never re-derive the split. (Gradients
// across shards: parallel/finalize_grads.h and parallel/grad_norm.h.)
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

/// The ShardSpec of the parameter an optimizer-state tensor belongs to:
/// state tensors are named "<parameter>.<kind>" (optim/optimizer.h) and have
/// the parameter's shape. Null when `state_name` names no sharded parameter
/// or `sizes` are not the shard's (`whole` = false) / whole tensor's (`whole`
/// = true) shape — scalars such as "step" pass through unchanged.
const ShardSpec* spec_of_state(const std::string& state_name, torch::IntArrayRef sizes, bool whole,
                               const std::map<std::string, ShardSpec>& specs,
                               const std::map<std::string, std::vector<int64_t>>& shard_shapes);

}  // namespace paratorch::tensor_parallel
