// src/parallel/pipeline/placement.cpp — paratorch::PlacedModel: a user's
// blocks on several devices of one process, through the project's
// pipeline::DevicePlacement (src/parallel/pipeline/device_placement.h), which places
// a bundled model's blocks; BlockModel makes the user's blocks one.
#include <paratorch/errors.h>
#include <paratorch/pipeline.h>

#include "parallel/pipeline/block_model.h"
#include "parallel/pipeline/device_placement.h"

namespace paratorch {

struct PlacedModel::State {
  std::shared_ptr<parallel::pipeline::BlockModel> model;
  std::unique_ptr<::paratorch::pipeline::DevicePlacement> placement;
};

PlacedModel::PlacedModel(std::vector<PipelineBlock> blocks, std::vector<torch::Device> devices,
                         DevicePlacementOptions options)
    : state_(std::make_unique<State>()) {
  options.validate();
  state_->model = std::make_shared<parallel::pipeline::BlockModel>(std::move(blocks));
  const auto n_blocks = static_cast<size_t>(state_->model->block_count());
  if (devices.empty() || devices.size() > n_blocks)
    throw UsageError("paratorch: PlacedModel got " + std::to_string(devices.size()) + " devices for " +
                     std::to_string(n_blocks) + " blocks; pass between 1 and " + std::to_string(n_blocks) + " devices");
  if (options.partition == PartitionBy::kSplitPoints && options.split_points.size() + 1 != devices.size())
    throw UsageError("paratorch: DevicePlacementOptions::split_points names " +
                     std::to_string(options.split_points.size()) + " cut(s) for " + std::to_string(devices.size()) +
                     " devices; give " + std::to_string(devices.size() - 1));
  const std::string by = parallel::pipeline::partition_text(options.partition, *state_->model, options.split_points,
                                                            "DevicePlacementOptions::split_points");
  state_->placement = std::make_unique<::paratorch::pipeline::DevicePlacement>(state_->model, std::move(devices), by);
}

PlacedModel::~PlacedModel() = default;

torch::Tensor PlacedModel::forward(const torch::Tensor& input) { return state_->placement->forward(input); }

torch::Device PlacedModel::device_of(const std::string& name) const {
  for (int i = 0; i < state_->model->block_count(); ++i)
    if (state_->model->block(i).name == name) return state_->placement->device_of_block(static_cast<size_t>(i));
  throw UsageError("paratorch: PlacedModel::device_of: no block \"" + name + "\"; blocks: " +
                   state_->model->block_names());
}

std::vector<torch::Tensor> PlacedModel::parameters() const { return state_->model->parameters(); }

}  // namespace paratorch
