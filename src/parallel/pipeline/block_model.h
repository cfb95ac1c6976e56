// src/parallel/pipeline/block_model.h — a user's ordered blocks seen as a
// models::BundledModel, so the project's pipeline mechanics (partition.h,
// executor.h, device_placement.h), which work on a bundled model's
// ModelBlocks, cut and run a user's own modules unchanged.
//
// Each block's module is registered under the block's name, so parameter
// names are "<block>.<parameter>": for a Sequential's children, the names the
// Sequential itself reports (what a single-process reference has).
#pragma once
#include "models/model.h"
#include <paratorch/pipeline.h>

#include <string>
#include <vector>

namespace paratorch::parallel::pipeline {

class BlockModel : public models::BundledModel {
 public:
  /// UsageError (naming PipelineBlock::name / ::module) for empty, dotted or
  /// repeated names and missing modules or forwards.
  explicit BlockModel(std::vector<PipelineBlock> blocks);

  torch::Tensor forward(const torch::Tensor& input) override;
  torch::Tensor loss(const models::Batch& batch) override;
  InitSpec init_spec(const std::string& name, const torch::Tensor& param) const override;
  std::vector<models::ModelBlock> blocks() override { return model_blocks_; }

  int block_count() const { return static_cast<int>(blocks_.size()); }
  const PipelineBlock& block(int i) const { return blocks_[static_cast<size_t>(i)]; }
  /// "a, b, c" — for messages.
  std::string block_names() const;
  /// The partition text partition.h understands ("3,5") for split points
  /// given by block name; UsageError naming `field` for unknown names, the
  /// first block, or names out of forward order.
  std::string cuts_of(const std::vector<std::string>& split_points, const std::string& field) const;

 private:
  std::vector<PipelineBlock> blocks_;
  std::vector<models::ModelBlock> model_blocks_;
};

/// The partition text for `by` ("params", "time" or the cuts of `split_points`).
std::string partition_text(PartitionBy by, const BlockModel& model, const std::vector<std::string>& split_points,
                           const std::string& field);

}  // namespace paratorch::parallel::pipeline
