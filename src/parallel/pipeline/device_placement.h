// src/parallel/pipeline/device_placement.h — in-process model parallelism: the
// model's consecutive blocks placed on a list of devices of one process
// (the `.to('cuda:0')` / `.to('cuda:1')` pattern), activations moved
// between devices on the way.
//
// The blocks are cut as the pipeline cuts them (partition.h: "params" by
// default), one stage per device. A block that uses a tied weight (gpt's
// head uses the token embedding) runs on the device that holds the weight,
// so the weight has one copy. Without micro-batches one device works at a
// time — the "very inefficient" naive model parallelism; it buys memory,
// not speed (the pipeline engine is the fast form across ranks).
#pragma once
#include "models/model.h"
#include "parallel/pipeline/partition.h"

#include <memory>
#include <vector>

namespace paratorch::pipeline {

class DevicePlacement {
 public:
  /// Moves each block's parameters to its device. UsageError when there are
  /// more devices than blocks.
  DevicePlacement(std::shared_ptr<models::BundledModel> model, std::vector<torch::Device> devices,
                  const std::string& by = "params");
  /// The model's forward; the output lies on the last block's device.
  torch::Tensor forward(const torch::Tensor& input);
  /// The model's loss (targets moved to the output's device).
  torch::Tensor loss(const models::Batch& batch);
  torch::Device device_of_block(size_t block) const { return block_devices_[block]; }
  const Partition& partition() const { return partition_; }

 private:
  std::shared_ptr<models::BundledModel> model_;
  std::vector<models::ModelBlock> blocks_;
  std::vector<torch::Device> block_devices_;
  Partition partition_;
};

}  // namespace paratorch::pipeline
