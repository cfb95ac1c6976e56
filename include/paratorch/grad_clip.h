// paratorch/grad_clip.h — clipping by the global gradient norm when the
// gradients are spread over ranks (torch.nn.utils.clip_grad_norm_, FSDP's
// clip_grad_norm_, Megatron-LM's clip_grad_norm_fp32).
//
/// In one process, torch::nn::utils::clip_grad_norm_ sees the whole model's
/// gradient. Sharded over ranks it would see only this rank's part and clip
/// each rank differently. These functions add the other ranks' squares, each
/// element of the model counted once, so every rank clips by the same norm,
/// the norm one process would measure:
///  - `shards`: the gradients are disjoint pieces over this group (the
///    shards of fully_shard): summed over it;
///  - `tp`: tensor parallelism; the module's tp slices (shard_specs) are
///    summed over it, its replicated parameters counted once;
///  - `pp`: each pipeline stage holds its own parameters: summed over it.
/// Gradients all-reduced over data parallelism (DistributedDataParallel)
/// are the same on every replica and need no group to be counted; given
/// the dp group as `replicas`, each replica reads only its 1/dp of them
/// and the partial sums add over dp (the same norm, read faster). A tensor
/// listed twice (weights tied inside one module) is counted once, as
/// Python's deduplicated parameters() would.
///
/// Example (a fully sharded model):
///   auto sharded = paratorch::fully_shard(model.ptr(), world.comm());
///   loss.backward();
///   double norm = sharded.clip_grad_norm(1.0);   // or, the same:
///   // paratorch::clip_grad_norm(sharded.parameters(), 1.0, {world.comm()});
///   opt.step();
/// Example (tensor and pipeline parallel, DDP across replicas):
///   paratorch::clip_grad_norm(*stage_module, 1.0, {nullptr, groups.tp(), groups.pp(), groups.dp()});
#pragma once
#include <paratorch/communicator.h>

#include <torch/torch.h>

#include <memory>
#include <vector>

namespace paratorch {

/// The groups over which the gradients are split; null (or size 1) for none.
struct GradNormGroups {
  std::shared_ptr<Communicator> shards;  ///< disjoint gradient pieces (fully_shard's shards)
  std::shared_ptr<Communicator> tp;      ///< tensor parallelism (module overloads only)
  std::shared_ptr<Communicator> pp;      ///< pipeline stages
  std::shared_ptr<Communicator> replicas;  ///< equal gradients (DDP's average): each rank reads its share
};

/// The whole model's gradient L2 norm, on every rank. Collective over the
/// groups given. Parameters without a gradient count nothing. UsageError
/// when `groups.tp` spans ranks (which parameters are tp slices comes from
/// the module: use the module overload).
double grad_norm(const std::vector<torch::Tensor>& params, const GradNormGroups& groups = {});
/// The same over `module`'s parameters, its tp slices told apart by shard_specs().
double grad_norm(const torch::nn::Module& module, const GradNormGroups& groups = {});

/// Scales every gradient by max_norm / (norm + 1e-6) when the norm exceeds
/// `max_norm` (torch::nn::utils::clip_grad_norm_'s rule); returns the norm
/// before clipping. UsageError unless max_norm > 0 (grad_norm() measures
/// without clipping).
double clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm, const GradNormGroups& groups = {});
double clip_grad_norm(const torch::nn::Module& module, double max_norm, const GradNormGroups& groups = {});

}  // namespace paratorch
