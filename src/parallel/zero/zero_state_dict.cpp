// src/parallel/zero/zero_state_dict.cpp — ZeroRedundancyOptimizer's state by
// parameter name.
//
// Saving: for every flat buffer and state kind, this rank's shard of the
// state is all-gathered and cut into parameters at their own shapes
// (zero::gather_full), so the map is what an unsharded optimizer of the
// same type holds ("<name>.exp_avg", ..., and "step"). Loading: each rank
// slices the pieces of its shard out of the full tensors, so the map loads
// at any dp size (and into an unsharded optimizer's state, and back).
#include "parallel/zero/zero_redundancy_impl.h"

#include "parallel/zero/optimizer_state.h"
#include "parallel/zero/sharded_optimizer.h"
#include <paratorch/errors.h>

namespace paratorch {

std::map<std::string, torch::Tensor> ZeroRedundancyOptimizer::state_dict() const {
  const Impl& s = *impl_;
  torch::NoGradGuard no_grad;
  std::map<std::string, torch::Tensor> out{{"step", torch::tensor(s.steps, torch::kLong)}};
  if (s.steps == 0) return out;  // an unsharded optimizer holds no state before its first step either
  for (const auto& b : s.shards->buffers()) {
    const auto state = zero::read_state(*s.optimizer, b.master);
    for (const auto& kind : s.kinds) {
      auto it = state.find(kind);
      auto shard = it != state.end() && it->second.defined() ? it->second.detach().to(torch::kFloat).contiguous()
                                                             : torch::zeros_like(b.master.detach());
      for (auto& [name, full] : zero::gather_full(*b.layout, shard, s.group.get())) out[name + "." + kind] = full;
    }
  }
  return out;
}

void ZeroRedundancyOptimizer::load_state_dict(const std::map<std::string, torch::Tensor>& state) {
  Impl& s = *impl_;
  torch::NoGradGuard no_grad;
  auto step = state.find("step");
  if (step == state.end())
    throw RuntimeFailure("paratorch: ZeroRedundancyOptimizer::load_state_dict: the state has no scalar 'step'");
  s.steps = step->second.item<int64_t>();
  if (s.steps == 0) return;
  for (const auto& b : s.shards->buffers()) {
    const auto& layout = *b.layout;
    std::map<std::string, torch::Tensor> mine;
    for (const auto& kind : s.kinds) {
      auto shard = torch::zeros_like(b.master.detach());
      for (const auto& piece : layout.pieces()) {
        const auto& param = layout.params()[piece.param];
        const std::string key = param.name + "." + kind;
        auto it = state.find(key);
        if (it == state.end())
          throw RuntimeFailure("paratorch: ZeroRedundancyOptimizer::load_state_dict: the state has no tensor '" +
                               key + "'");
        if (it->second.numel() != param.numel())
          throw RuntimeFailure("paratorch: ZeroRedundancyOptimizer::load_state_dict: '" + key + "' has " +
                               std::to_string(it->second.numel()) + " elements but the parameter has " +
                               std::to_string(param.numel()));
        shard.narrow(0, piece.shard_offset, piece.length)
            .copy_(it->second.reshape({-1}).narrow(0, piece.param_offset, piece.length));
      }
      mine[kind] = shard;
    }
    zero::write_state(*s.optimizer, b.master, mine, s.steps);
  }
}

}  // namespace paratorch
