// src/parallel/zero/sharded_optimizer.cpp — see sharded_optimizer.h.
#include "parallel/zero/sharded_optimizer.h"

#include <paratorch/errors.h>

namespace paratorch::zero {

Pieces make_pieces(const std::vector<ShardUnit>& units) {
  torch::NoGradGuard no_grad;
  Pieces out;
  for (const auto& unit : units) {
    const auto masters = unit.layout->piece_views(unit.master);
    const auto grads = unit.layout->piece_views(unit.grad);
    for (size_t k = 0; k < masters.size(); ++k) {
      const auto& param = unit.layout->params()[unit.layout->pieces()[k].param];
      // detach(): a fresh tensor on the same memory, so .grad can be attached.
      auto piece = masters[k].detach();
      piece.mutable_grad() = grads[k];
      out.tensors.emplace_back(param.name, piece);
      out.decay.push_back(param.decays);
    }
  }
  return out;
}

std::map<std::string, torch::Tensor> gather_full(const FlatLayout& layout, const torch::Tensor& shard,
                                                 Communicator* group) {
  torch::NoGradGuard no_grad;
  torch::Tensor full;
  if (group == nullptr || layout.ranks() == 1) {
    full = shard;
  } else {
    full = torch::empty({layout.padded_numel()}, shard.options());
    group->all_gather(full, shard.contiguous());
  }
  std::map<std::string, torch::Tensor> out;
  const auto views = layout.views(full);
  for (size_t i = 0; i < views.size(); ++i) out[layout.params()[i].name] = views[i].clone();
  return out;
}

ShardedOptimizer::ShardedOptimizer(const optim::OptimizerOptions& options, std::vector<ShardUnit> units,
                                   const Pieces& pieces, std::shared_ptr<Communicator> group,
                                   std::function<bool()> may_step, std::function<void()> after_step)
    : units_(std::move(units)),
      group_(std::move(group)),
      may_step_(std::move(may_step)),
      after_step_(std::move(after_step)),
      inner_(optim::make_optimizer(options, pieces.tensors, pieces.decay)) {
  kinds_ = options.kind == optim::OptimizerKind::kAdamW ? std::vector<std::string>{"exp_avg", "exp_avg_sq"}
                                                        : std::vector<std::string>{"momentum_buffer"};
}

void ShardedOptimizer::step(double lr, double grad_scale) {
  if (may_step_ && !may_step_()) return;  // skipped: neither state nor step count moves
  inner_->step(lr, grad_scale);
  steps_ = inner_->steps_taken();
  if (after_step_) after_step_();
}

// Per unit and state kind: assemble this rank's shard of the state from the
// inner optimizer's pieces, all-gather it, cut it into parameters.
std::map<std::string, torch::Tensor> ShardedOptimizer::state_tensors() const {
  const auto mine = inner_->state_tensors();
  std::map<std::string, torch::Tensor> out{{"step", torch::tensor(steps_, torch::kLong)}};
  for (const auto& unit : units_) {
    const auto& layout = *unit.layout;
    for (const auto& kind : kinds_) {
      auto shard = torch::zeros({layout.shard_numel()}, unit.master.options());
      for (const auto& piece : layout.pieces())
        shard.narrow(0, piece.shard_offset, piece.length)
            .copy_(mine.at(layout.params()[piece.param].name + "." + kind));
      for (auto& [name, full] : gather_full(layout, shard, group_.get())) out[name + "." + kind] = full;
    }
  }
  return out;
}

std::vector<optim::LocalState> ShardedOptimizer::local_state() const {
  const auto mine = inner_->state_tensors();
  std::vector<optim::LocalState> out{{"step", torch::tensor(steps_, torch::kLong), -1}};
  for (const auto& unit : units_)
    for (const auto& piece : unit.layout->pieces()) {
      const std::string& name = unit.layout->params()[piece.param].name;
      for (const auto& kind : kinds_) out.push_back({name + "." + kind, mine.at(name + "." + kind), piece.param_offset});
    }
  return out;
}

void ShardedOptimizer::load_state_tensors(const std::map<std::string, torch::Tensor>& state) {
  std::map<std::string, torch::Tensor> mine;
  auto step = state.find("step");
  if (step == state.end()) throw RuntimeFailure("paratorch: optimizer state has no scalar 'step'");
  mine["step"] = step->second;
  for (const auto& unit : units_) {
    const auto& layout = *unit.layout;
    for (const auto& piece : layout.pieces()) {
      const auto& param = layout.params()[piece.param];
      for (const auto& kind : kinds_) {
        auto it = state.find(param.name + "." + kind);
        if (it == state.end())
          throw RuntimeFailure("paratorch: optimizer state has no tensor '" + param.name + "." + kind + "'");
        if (it->second.numel() != param.numel())
          throw RuntimeFailure("paratorch: optimizer state '" + param.name + "." + kind + "' has " +
                               std::to_string(it->second.numel()) + " elements but the parameter has " +
                               std::to_string(param.numel()));
        mine[param.name + "." + kind] = it->second.reshape({-1}).narrow(0, piece.param_offset, piece.length);
      }
    }
  }
  inner_->load_state_tensors(mine);
  steps_ = inner_->steps_taken();
}

}  // namespace paratorch::zero
