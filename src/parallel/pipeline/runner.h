// src/parallel/pipeline/runner.h — what a paratorch::Pipeline is made of:
// the user's blocks as a BlockModel, the partition into stages, this rank's
// parameters, and the schedule executor (src/parallel/pipeline/executor.h) that runs
// the action lists of src/parallel/pipeline/schedule.h.
#pragma once
#include "parallel/pipeline/block_model.h"
#include "parallel/pipeline/stage_parameters.h"
#include "parallel/pipeline/executor.h"
#include "parallel/pipeline/partition.h"
#include <paratorch/pipeline.h>

#include <memory>

namespace paratorch {

class PipelineRunner {
 public:
  PipelineRunner(std::vector<PipelineBlock> blocks, std::shared_ptr<Communicator> pp, torch::Tensor example_input,
                 PipelineOptions options);

  double step(const torch::Tensor& input, const torch::Tensor& target, const PipelineLoss& loss_fn);
  torch::Tensor forward(const torch::Tensor& input);

  parallel::pipeline::StageParameters& parameters() { return *params_; }
  Communicator& pp() { return *pp_; }
  const ::paratorch::pipeline::Partition& partition() const { return partition_; }
  std::vector<std::string> local_block_names() const;
  std::string describe() const;
  /// This rank's gradients for the global norm (StageParameters::
  /// norm_entries), each with its tp split (shard_specs of its block's
  /// module) when `tp_specs`.
  std::vector<parallel::NormEntry> norm_entries(bool tp_specs) const;
  /// Pipeline::set_gradient_sync: `sync(last)` before each of this rank's
  /// backward (or W) actions, `last` for the final one in its action list.
  void set_gradient_sync(std::function<void(bool last)> sync);

 private:
  std::vector<double> measured_block_ms(const torch::Tensor& example_input);
  /// Activation shapes at each cut, from one sample through the whole model
  /// (every rank holds it still, so every rank computes them alike).
  std::vector<::paratorch::pipeline::BoundarySpec> boundary_specs(const torch::Tensor& example_input);
  std::vector<::paratorch::pipeline::StageChunk> local_chunks() const;
  bool last_rank() const { return pp_->rank() == pp_->size() - 1; }

  PipelineOptions options_;
  std::shared_ptr<Communicator> pp_;
  std::shared_ptr<parallel::pipeline::BlockModel> model_;
  std::vector<models::ModelBlock> blocks_;
  ::paratorch::pipeline::PipelineShape shape_;
  ::paratorch::pipeline::Partition partition_;
  std::unique_ptr<parallel::pipeline::StageParameters> params_;
  std::unique_ptr<::paratorch::pipeline::Executor> executor_;
  torch::Dtype output_dtype_ = torch::kFloat;
};

}  // namespace paratorch
