// src/parallel/zero/zero_engine_stage3.cpp — ZeRO stage 3: a bundled
// model's blocks run as fully sharded units.
//
// Stage 3 has one driver, fully_shard's (fsdp_state.h, fsdp_unit.cpp): the
// engine hands it the model's blocks (BundledModel::blocks) as units, with
// its own master and gradient shards as the units' shards and gradients,
// so the optimizer, the loss scaler, tp's partial sums and checkpoints see
// the same pieces as at stages 1-2. Each block is all-gathered just before
// its forward (the next one's gather issued first, so it overlaps) and
// freed after, keeping only its input; backward gathers it again,
// recomputes it with autograd (activation checkpointing, Chen et al. 2016),
// differentiates it into its flat gradient buffer and reduce-scatters that
// through the engine's comm hook while the next block back recomputes. A
// weight two blocks use (gpt's wte, tied to the output head) is sharded
// once, in one more unit, and reduce-scattered once when backward ends.
//
// Resident memory. World keeps freed blocks in glibc's heap (no mmap, no
// automatic trim: WorldOptions::tune_malloc), which suits a step that
// reallocates the same tensors; stage 3's transients do not fit that
// pattern (each block's weight-gradient temporaries and reduce-scatter
// scratch land on different free chunks and stay resident). So with
// ZeroEngineOptions::release_freed_memory the driver hands freed heap
// pages back (malloc_trim) where they pile up (FsdpState::after_release:
// after each block's forward and backward, and once the previous block's
// reduce-scatter has finished), and a hook does so just before autograd
// accumulates each large (>= 1 MiB) gradient, so at most about one weight's
// temporary is resident on top of the live set. Measured (bench/zero,
// dp=4): peak 577 -> 501 MiB; docs/zero.md has the step-time cost.
#include "parallel/zero/zero_engine.h"

#include "parallel/zero/fsdp_state.h"
#include "parallel/zero/zero_unit.h"

#include <algorithm>
#include <set>

namespace paratorch::zero {

std::vector<std::vector<size_t>> ZeroEngine::stage3_members() const {
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < names_.size(); ++i) index[names_[i]] = i;
  std::set<size_t> tied;
  for (const auto& block : blocks_)
    for (const auto& name : block.shared) tied.insert(index.at(name));
  std::vector<std::vector<size_t>> members;
  for (const auto& block : blocks_) {
    members.emplace_back();
    for (const auto& name : block.parameters)
      if (!tied.count(index.at(name))) members.back().push_back(index.at(name));
  }
  if (!tied.empty()) members.emplace_back(tied.begin(), tied.end());  // model order
  return members;
}

// Each unit is initialized (BundledModel::initialize of its names), copied
// into a flat fp32 buffer, and only this rank's shard kept as its master
// before the next one is initialized.
void ZeroEngine::build_stage3_units() {
  const int ranks = shard_ranks(), rank = groups_.coords().dp;
  torch::NoGradGuard no_grad;
  for (auto& list : stage3_members()) {
    auto unit = std::make_unique<Unit>();
    std::vector<zero::FlatParam> flat;
    std::vector<std::string> unit_names;
    for (size_t k : list) {
      flat.push_back({names_[k], params_[k].sizes().vec(), params_[k].dim() >= 2});
      unit_names.push_back(names_[k]);
    }
    unit->members = list;
    unit->layout = std::make_shared<zero::FlatLayout>(flat, ranks, rank);
    const auto& L = *unit->layout;
    model_->initialize(options_.seed, unit_names);
    auto full = torch::zeros({L.padded_numel()}, torch::TensorOptions().device(device_));
    auto views = L.views(full);
    for (size_t k = 0; k < list.size(); ++k) views[k].copy_(params_[list[k]]);
    unit->master = full.narrow(0, L.shard_begin(), L.shard_numel()).clone();
    for (size_t k : list) params_[k].set_data(torch::empty({0}, full.options().dtype(dtype_)));
    unit->grad = torch::zeros({L.shard_numel()}, full.options());
    views.clear();
    full = torch::Tensor();
    zero::return_free_memory_to_os();  // this unit's initialized tensors, now sharded and freed
    units_.push_back(std::move(unit));
  }
}

void ZeroEngine::build_fsdp() {
  fsdp_ = std::make_shared<FsdpState>();
  fsdp_->group = groups_.dp();
  fsdp_->options.mixed_precision.param_dtype = dtype_;
  fsdp_->hook = reduce_in_dtype(reduce_dtype_, *groups_.dp());  // stages 1-2's comm hook ([train] reduce_precision)
  const bool trims = options_.release_freed_memory;
  if (trims) fsdp_->after_release = [] { zero::return_free_memory_to_os(); };
  std::map<std::string, size_t> tied_member;  // name -> index in the tied unit
  if (units_.size() > blocks_.size()) {
    fsdp_->shared = blocks_.size();
    const auto& tied = *units_.back();
    for (size_t k = 0; k < tied.members.size(); ++k) tied_member[names_[tied.members[k]]] = k;
  }
  for (size_t u = 0; u < units_.size(); ++u) {
    Unit& mine = *units_[u];
    FsdpState::Unit unit;
    unit.name = u < blocks_.size() ? blocks_[u].name : "(tied)";
    if (u < blocks_.size()) unit.forward = blocks_[u].forward;
    for (size_t k : mine.members) unit.params.push_back(params_[k]);
    unit.layout = mine.layout;
    unit.shard = mine.master;
    unit.shard.mutable_grad() = mine.grad;  // the reduced slices are added into the engine's gradient shard
    unit.flat = zero::GatheredFlat(unit.layout.get(), unit.params);
    if (u < blocks_.size()) {
      std::set<size_t> uses;
      for (const auto* list : {&blocks_[u].parameters, &blocks_[u].shared})
        for (const auto& name : *list)
          if (tied_member.count(name)) uses.insert(tied_member.at(name));
      unit.shared_members.assign(uses.begin(), uses.end());
    }
    fsdp_->units.push_back(std::move(unit));
  }
  if (!trims) return;
  // Just before AccumulateGrad adds a large gradient into its buffer view:
  // the previous weight's temporary has been freed by then. (Decided by the
  // full shape from the unit's layout: between blocks the parameters are empty.)
  for (const auto& unit : units_)
    for (size_t k = 0; k < unit->members.size(); ++k) {
      auto& param = params_[unit->members[k]];
      if (param.requires_grad() && unit->layout->params()[k].numel() * 4 >= (int64_t{1} << 20))
        param.register_hook([](const torch::Tensor&) { zero::return_free_memory_to_os(); });
    }
}

torch::Tensor ZeroEngine::forward_blocks(const torch::Tensor& input) {
  torch::Tensor x = input;
  for (size_t b = 0; b < blocks_.size(); ++b) x = fsdp_->run(b, x);
  if (!torch::GradMode::is_enabled() && fsdp_->shared) fsdp_->release(*fsdp_->shared);  // no backward will
  return x;
}

double ZeroEngine::forward_backward_blocks(const models::Batch& batch, int microbatches) {
  auto loss = fp32_loss(forward_blocks(batch.input), batch) / microbatches;
  const double scale = options_.loss_scaling ? scaler_.scale() : 1.0;
  (loss * scale).backward();  // each block's backward reduce-scatters its gradient into its shard
  return loss.item<double>();
}

}  // namespace paratorch::zero
