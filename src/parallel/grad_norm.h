// src/parallel/grad_norm.h — the whole model's squared gradient norm from
// the pieces the ranks hold, whatever the layout.
//
// Clipping by the global norm (torch.nn.utils.clip_grad_norm_) must see the
// norm of the whole model's gradient in every layout, so that a parallel run
// clips exactly as one process would. Each rank sums its own gradients'
// squares; this adds the other ranks' share, counting every element of the
// model exactly once (Megatron-LM's get_grad_norm rules, Shoeybi et al. 2019):
//  - a tp shard (ShardSpec::sharded()) is a distinct slice on each tp rank:
//    summed over tp;
//  - a parameter replicated over tp (LayerNorms, row-parallel biases, wpe)
//    holds the same gradient on every tp rank: counted once;
//  - pipeline stages hold distinct parameters: summed over pp;
//  - a tied copy (the output head's copy of the token embedding on the last
//    stage) repeats its owner's gradient after finalize_gradients: not
//    counted here, its owner counts it;
//  - gradients sharded over dp (ZeRO, Rajbhandari et al. 2019; parameter
//    server shards) are disjoint pieces: summed over that group. Gradients
//    replicated over dp (after an all-reduce) are equal on every replica and
//    need no dp traffic to be counted; but each replica may read only its
//    1/dp of them (NormGroups::replicas): the pieces are then disjoint and
//    their sums add over dp, so a replica on one thread reads 1/dp as much.
//
// Example (an engine's clipping hook):
//   return [this](double local) {
//     return parallel::sum_squares_across(local, norm_entries(), {nullptr, groups_.tp().get(), groups_.pp().get()});
//   };
//
// The local sums (sum_of_squares) are one fused read of each fp32 gradient:
// on a CPU the pass is memory-bound (35 MB for an 8.8M-parameter model) and
// `g.pow(2).sum()` would write and reread a temporary copy. They run in
// fixed chunks, added in chunk order, so the result does not depend on the
// thread count.
#pragma once
#include <paratorch/communicator.h>
#include <paratorch/tensor_parallel_layers.h>

#include <vector>

namespace paratorch::parallel {

/// One gradient this rank holds, with the facts that decide how it counts.
struct NormEntry {
  torch::Tensor grad;  ///< undefined: no gradient (counts nothing)
  tensor_parallel::ShardSpec spec;
  bool tied_copy = false;  ///< a copy of a weight whose owner (another stage) counts it
};

/// ||t||^2 in double: fp32 contiguous CPU tensors through one fused read
/// (grad_norm_kernel.h), any other through torch in fp64. 0 when undefined.
double sum_of_squares(const torch::Tensor& t);

/// Sum of ||p.grad()||^2 over `params` that have a gradient (this rank's only).
double local_grad_sum_of_squares(const std::vector<torch::Tensor>& params);

/// The groups the model's gradient is spread over; null (or size 1) for none.
struct NormGroups {
  Communicator* shards = nullptr;  ///< gradients are disjoint pieces over it (ZeRO's dp group)
  Communicator* tp = nullptr;
  Communicator* pp = nullptr;
  /// the gradients are equal on every rank of it (DDP's average): each rank
  /// reads its share (replica_share) and the sums add over it
  Communicator* replicas = nullptr;
};

/// The whole model's squared gradient norm, on every rank, given `local`:
/// the sum of the squares of every gradient this rank holds (all of
/// `entries`, tied copies included). Collective over the groups given, in the
/// order shards, tp, pp; `entries` must be listed alike on every tp rank.
/// `groups.replicas` must be null: `local` has read everything already.
double sum_squares_across(double local, const std::vector<NormEntry>& entries, const NormGroups& groups);

/// The same from `entries` alone, each gradient read once: with
/// `groups.replicas`, only this rank's replica_share of the counted entries
/// (tied copies left out). Collective over shards, replicas, tp, pp.
double sum_squares_of(const std::vector<NormEntry>& entries, const NormGroups& groups);

/// Rank `rank` of `replicas`' share of `entries`' gradients: their elements,
/// concatenated in order, cut into `replicas` contiguous ranges whose sizes
/// differ by at most one; each piece (a flat view) keeps its entry's spec and
/// tied flag. Entries without a gradient hold no elements.
std::vector<NormEntry> replica_share(const std::vector<NormEntry>& entries, int rank, int replicas);

}  // namespace paratorch::parallel
