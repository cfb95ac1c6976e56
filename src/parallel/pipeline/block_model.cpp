// src/parallel/pipeline/block_model.cpp — see block_model.h; also the
// PipelineBlock constructors and blocks_of() of the public header.
#include "parallel/pipeline/block_model.h"

#include <paratorch/errors.h>

#include <set>

namespace paratorch {

PipelineBlock::PipelineBlock(std::string name_, torch::nn::AnyModule any)
    : name(std::move(name_)), module(any.is_empty() ? nullptr : any.ptr()) {
  // AnyModule copies are shallow: the lambda runs the very module registered here.
  if (module) forward = [any](const torch::Tensor& x) mutable { return any.forward<torch::Tensor>(x); };
}

PipelineBlock::PipelineBlock(std::string name_, std::shared_ptr<torch::nn::Module> module_,
                             std::function<torch::Tensor(const torch::Tensor&)> forward_)
    : name(std::move(name_)), module(std::move(module_)), forward(std::move(forward_)) {}

std::vector<PipelineBlock> blocks_of(const torch::nn::Sequential& sequential) {
  std::vector<PipelineBlock> out;
  const auto children = sequential->named_children();
  size_t i = 0;
  for (const auto& any : *sequential) out.emplace_back(children[i++].key(), any);
  return out;
}

}  // namespace paratorch

namespace paratorch::parallel::pipeline {

BlockModel::BlockModel(std::vector<PipelineBlock> blocks) : blocks_(std::move(blocks)) {
  std::set<std::string> seen;
  for (auto& b : blocks_) {
    if (b.name.empty() || b.name.find('.') != std::string::npos || !seen.insert(b.name).second)
      throw UsageError("paratorch: PipelineBlock::name \"" + b.name +
                       "\" must be non-empty, without '.', and unique among the blocks");
    if (!b.module || !b.forward)
      throw UsageError("paratorch: PipelineBlock \"" + b.name + "\" needs a module and a forward function");
    register_module(b.name, b.module);
  }
  for (const auto& b : blocks_) model_blocks_.push_back(make_block(b.name, {b.name + "."}, b.forward));
}

torch::Tensor BlockModel::forward(const torch::Tensor& input) {
  torch::Tensor x = input;
  for (const auto& b : blocks_) x = b.forward(x);
  return x;
}

torch::Tensor BlockModel::loss(const models::Batch&) {
  throw RuntimeFailure("paratorch: a pipeline's loss comes from step()'s loss_fn");
}

InitSpec BlockModel::init_spec(const std::string& name, const torch::Tensor&) const {
  throw RuntimeFailure("paratorch: parameter " + name + " is initialized by the user's module, not by paratorch");
}

std::string BlockModel::block_names() const {
  std::string out;
  for (const auto& b : blocks_) out += (out.empty() ? "" : ", ") + b.name;
  return out;
}

std::string BlockModel::cuts_of(const std::vector<std::string>& split_points, const std::string& field) const {
  std::string text;
  int previous = 0;
  for (const auto& name : split_points) {
    int index = -1;
    for (int i = 0; i < block_count(); ++i)
      if (blocks_[static_cast<size_t>(i)].name == name) index = i;
    if (index < 0)
      throw UsageError("paratorch: " + field + " names \"" + name + "\", which is no block of the model; blocks: " +
                       block_names());
    if (index <= previous)
      throw UsageError("paratorch: " + field + " must name blocks in forward order, after the first block \"" +
                       blocks_.front().name + "\" (each starts a new stage); got \"" + name + "\" out of order");
    previous = index;
    text += (text.empty() ? "" : ",") + std::to_string(index);
  }
  return text;
}

std::string partition_text(PartitionBy by, const BlockModel& model, const std::vector<std::string>& split_points,
                           const std::string& field) {
  switch (by) {
    case PartitionBy::kParameters: return "params";
    case PartitionBy::kTime: return "time";
    case PartitionBy::kSplitPoints: return model.cuts_of(split_points, field);
  }
  return "params";
}

}  // namespace paratorch::parallel::pipeline
