// src/parallel/zero/zero_grad_clip.cpp — ZeroRedundancyOptimizer's
// clipping: the gradient shards, averaged over dp by zero::FlatShards's
// reducer (flat_shards.h), scaled by the whole model's gradient norm
// (DeepSpeed's gradient_clipping, clip_grad_norm_'s rule).
#include "parallel/zero/zero_redundancy_impl.h"

#include "parallel/grad_clip.h"

#include <set>

namespace paratorch {

// The shards are disjoint pieces over dp (padding's gradient is zero). With
// tp or tied copies, each parameter's piece of the shard carries its split
// and whether another stage counts it (grad_norm.h's rules).
void ZeroRedundancyOptimizer::Impl::clip_gradients() {
  const bool tp = options.clip_tp_group && options.clip_tp_group->size() > 1;
  const std::set<std::string> copies(options.clip_tied_copies.begin(), options.clip_tied_copies.end());
  std::vector<parallel::NormEntry> entries;
  for (const auto& b : shards->buffers()) {
    if (!tp && copies.empty()) {
      entries.push_back({b.grad, {}, false});
      continue;
    }
    for (const auto& piece : b.layout->pieces()) {
      const std::string& name = names[b.members[piece.param]];
      entries.push_back({b.grad.narrow(0, piece.shard_offset, piece.length),
                         tp ? options.clip_tp_specs.at(name) : tensor_parallel::ShardSpec{}, copies.count(name) > 0});
    }
  }
  last_grad_norm = parallel::clip_norm_entries(
      entries, options.max_grad_norm,
      {group.get(), tp ? options.clip_tp_group.get() : nullptr, options.clip_pp_group.get()});
}

}  // namespace paratorch
