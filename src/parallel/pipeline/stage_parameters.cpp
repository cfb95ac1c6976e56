// src/parallel/pipeline/stage_parameters.cpp — see stage_parameters.h.
#include "parallel/pipeline/stage_parameters.h"

#include "parallel/finalize_grads.h"

#include <paratorch/errors.h>

#include <set>
#include <sstream>

namespace paratorch::parallel::pipeline {
namespace {

std::string shape_text(const std::vector<int64_t>& shape) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  return out.str() + "]";
}

const void* identity(const torch::Tensor& t) { return t.unsafeGetTensorImpl(); }

}  // namespace

StageParameters::StageParameters(BlockModel& model, const ::paratorch::pipeline::Partition& partition,
                                 const ::paratorch::pipeline::PipelineShape& shape, int rank,
                                 const std::vector<std::vector<std::string>>& tied)
    : rank_(rank), tied_(tied) {
  for (const auto& item : model.named_parameters(true)) {
    order_.push_back(item.key());
    params_[item.key()] = item.value();
    shapes_[item.key()] = item.value().sizes().vec();
  }
  const auto blocks = model.blocks();
  for (size_t i = 0; i < blocks.size(); ++i) {
    block_rank_.push_back(shape.rank_of_stage(partition.stage_of_block(static_cast<int>(i))));
    for (const auto& name : blocks[i].parameters) owner_[name] = block_rank_.back();
  }
  check_tied(tied);
  torch::NoGradGuard no_grad;
  for (const auto& group : tied_)  // copies start equal (a no-op where the user shares one tensor)
    for (size_t i = 1; i < group.size(); ++i)
      if (identity(params_[group[i]]) != identity(params_[group[0]])) params_[group[i]].copy_(params_[group[0]]);
}

void StageParameters::check_tied(const std::vector<std::vector<std::string>>& tied) const {
  std::set<std::string> seen;
  for (const auto& group : tied)
    for (const auto& name : group) {
      if (!params_.count(name)) {
        std::string known;
        for (const auto& n : order_) known += (known.empty() ? "" : ", ") + n;
        throw UsageError("paratorch: PipelineOptions::tied names \"" + name +
                         "\", which is no parameter of the model; parameters: " + known);
      }
      if (!seen.insert(name).second)
        throw UsageError("paratorch: PipelineOptions::tied names \"" + name + "\" twice; each parameter may be in one group");
      if (shapes_.at(name) != shapes_.at(group[0]))
        throw UsageError("paratorch: PipelineOptions::tied groups \"" + group[0] + "\" " +
                         shape_text(shapes_.at(group[0])) + " with \"" + name + "\" " +
                         shape_text(shapes_.at(name)) + "; tied parameters must have one shape");
    }
}

void StageParameters::keep_own(BlockModel& model, torch::Device device) {
  std::set<const void*> kept;
  for (const auto& name : order_)
    if (owner_.at(name) == rank_) kept.insert(identity(params_[name]));
  torch::NoGradGuard no_grad;
  for (const auto& name : order_)  // a tensor shared with a name held here stays
    if (!kept.count(identity(params_[name]))) params_[name].set_data(torch::empty({0}, params_[name].options()));
  for (int i = 0; i < model.block_count(); ++i)  // parameters and buffers
    if (block_rank_[static_cast<size_t>(i)] == rank_) model.block(i).module->to(device);
}

std::vector<torch::Tensor> StageParameters::distinct_local(const std::vector<std::string>& names) const {
  std::vector<torch::Tensor> out;
  std::set<const void*> seen;
  for (const auto& name : names)
    if (owner_.at(name) == rank_ && seen.insert(identity(params_.at(name))).second) out.push_back(params_.at(name));
  return out;
}

// What a tied copy's .grad held before the step is set aside and the
// gradient zeroed in place, not replaced: the tensor may be a view that a
// gradient reducer owns (ZeRO's or DDP's bucket), which must keep seeing it.
void StageParameters::begin_step() {
  torch::NoGradGuard no_grad;
  set_aside_.clear();
  for (const auto& group : tied_)
    for (auto& t : distinct_local(group)) {
      if (!t.grad().defined()) continue;
      set_aside_[identity(t)] = t.grad().clone();
      t.mutable_grad().zero_();
    }
}

// Every rank takes part in each group's sum that spans ranks (those without
// a copy add zeros): the pp group is the only communicator a Pipeline has.
// The sum itself is the finalize step's (parallel/finalize_grads.h).
void StageParameters::finish_step(Communicator& pp) {
  torch::NoGradGuard no_grad;
  for (const auto& group : tied_) {
    std::set<int> holders;
    for (const auto& name : group) holders.insert(owner_.at(name));
    auto mine = distinct_local(group);
    parallel::TiedGradients tied;
    for (auto& t : mine) {
      if (!t.grad().defined()) t.mutable_grad() = torch::zeros_like(t);
      tied.copies.push_back(t.grad());
    }
    if (mine.empty()) tied.zero = torch::zeros(shapes_.at(group[0]), params_.at(group[0]).options());
    parallel::sum_tied_gradients(tied, holders.size() > 1 ? &pp : nullptr);
    for (auto& t : mine) {
      const torch::Tensor& before = set_aside_[identity(t)];
      if (before.defined()) t.mutable_grad().add_(before);
    }
  }
  set_aside_.clear();
}

std::vector<torch::Tensor> StageParameters::local() const { return distinct_local(order_); }

std::map<std::string, torch::Tensor> StageParameters::named_local() const {
  std::map<std::string, torch::Tensor> out;
  for (const auto& name : order_)
    if (owner_.at(name) == rank_) out[name] = params_.at(name);
  return out;
}

std::map<std::string, torch::Tensor> StageParameters::full(Communicator& pp) const {
  std::map<std::string, torch::Tensor> out;
  for (const auto& name : order_) {
    const torch::Tensor& p = params_.at(name);
    torch::Tensor t = owner_.at(name) == rank_ ? p.detach().to(torch::kCPU).contiguous().clone()
                                               : torch::empty(shapes_.at(name), p.options().device(torch::kCPU));
    pp.broadcast(t, owner_.at(name));
    out[name] = t;
  }
  return out;
}

std::set<const void*> StageParameters::tied_copies() const {
  std::set<const void*> copies;
  for (const auto& group : tied_) {
    const auto mine = distinct_local(group);
    const bool counts_here = owner_.at(group[0]) == rank_;
    for (size_t i = counts_here ? 1 : 0; i < mine.size(); ++i) copies.insert(identity(mine[i]));
  }
  return copies;
}

std::vector<std::string> StageParameters::tied_copy_names() const {
  const auto copies = tied_copies();
  std::vector<std::string> out;
  for (const auto& [name, t] : named_local())
    if (copies.count(identity(t))) out.push_back(name);
  return out;
}

std::vector<NormEntry> StageParameters::norm_entries() const {
  const auto copies = tied_copies();
  std::vector<NormEntry> out;
  for (const auto& t : local()) out.push_back({t.grad(), {}, copies.count(identity(t)) > 0});
  return out;
}

int64_t StageParameters::local_numel() const {
  int64_t n = 0;
  for (const auto& t : local()) n += t.numel();
  return n;
}

}  // namespace paratorch::parallel::pipeline
