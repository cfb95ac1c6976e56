// src/parallel/zero/zero_engine_parameters.cpp — ZeroEngine's whole parameters in
// and out of its flat shards: gathered by name for verify and checkpoints,
// loaded back into each rank's shard (tp-sliced), and counted.
#include "parallel/zero/zero_engine.h"

#include "parallel/checkpoint/checkpoint_pieces.h"
#include "parallel/zero/zero_unit.h"

namespace paratorch::zero {

std::map<std::string, torch::Tensor> ZeroEngine::full_parameters() {
  std::map<std::string, torch::Tensor> out;
  auto group = shard_ranks() > 1 ? groups_.dp() : nullptr;
  for (auto& u : units_)
    for (auto& [name, t] : zero::gather_full(*u->layout, u->master, group.get())) out[name] = t.cpu();
  return tp_.whole(std::move(out));  // sorted: every tp rank gathers in the same order
}

void ZeroEngine::load_full_parameters(const std::map<std::string, torch::Tensor>& tensors) {
  torch::NoGradGuard no_grad;
  for (auto& u : units_) {
    const auto& L = *u->layout;
    for (const auto& piece : L.pieces()) {
      const auto& param = L.params()[piece.param];
      const auto local = tp_.local_part(tensors, param.name, param.shape);  // checked, tp-sliced
      u->master.narrow(0, piece.shard_offset, piece.length)
          .copy_(local.reshape({-1}).narrow(0, piece.param_offset, piece.length));
    }
  }
  publish_parameters();
}

// Every stage keeps fp32 masters as flat shards: each rank writes its pieces.
std::optional<std::vector<formats::Piece>> ZeroEngine::checkpoint_pieces(const optim::Optimizer& optimizer) {
  parallel::CheckpointPieces out(tp_, groups_.coords().dp, groups_.layout().dp, groups_.world()->rank());
  for (auto& u : units_) {
    const auto& L = *u->layout;
    for (const auto& piece : L.pieces()) {
      const auto& param = L.params()[piece.param];
      out.add_parameter_piece(param.name, param.shape, u->master.narrow(0, piece.shard_offset, piece.length),
                              piece.param_offset);
    }
  }
  out.add_optimizer_state(optimizer.local_state());
  return out.take();
}

formats::ShardPlan ZeroEngine::parameters_to_load() {
  formats::ShardPlan plan;
  for (auto& u : units_)
    for (const auto& piece : u->layout->pieces()) {
      const std::string& name = u->layout->params()[piece.param].name;
      plan[name] = parallel::tp_region(tp_, name);
    }
  return plan;
}

int64_t ZeroEngine::parameter_count() {
  int64_t n = 0;
  for (auto& u : units_)
    for (const auto& p : u->layout->params())
      n += tp_.whole_numel(p.name, p.numel());
  return n;
}

int64_t ZeroEngine::local_parameter_count() {
  int64_t n = 0;
  for (auto& u : units_) n += u->layout->numel();
  return n;
}

}  // namespace paratorch::zero
