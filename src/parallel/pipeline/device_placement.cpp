// src/parallel/pipeline/device_placement.cpp — see device_placement.h.
#include "parallel/pipeline/device_placement.h"

#include <paratorch/errors.h>

#include <map>

namespace paratorch::pipeline {

DevicePlacement::DevicePlacement(std::shared_ptr<models::BundledModel> model, std::vector<torch::Device> devices,
                                 const std::string& by)
    : model_(std::move(model)), blocks_(model_->blocks()) {
  if (devices.empty()) throw UsageError("paratorch: device placement needs at least one device");
  if (devices.size() > blocks_.size())
    throw UsageError("paratorch: " + std::to_string(devices.size()) + " devices but the model has only " +
                     std::to_string(blocks_.size()) + " blocks; give at most that many devices");
  partition_ = make_partition(by, *model_, blocks_, static_cast<int>(devices.size()));
  std::map<std::string, torch::Device> param_device;
  for (size_t i = 0; i < blocks_.size(); ++i) {
    torch::Device d = devices[static_cast<size_t>(partition_.stage_of_block(static_cast<int>(i)))];
    // A block using a tied weight joins the weight's device (one copy of it).
    for (const auto& name : blocks_[i].shared) d = param_device.at(name);
    for (const auto& name : blocks_[i].parameters) param_device.emplace(name, d);
    block_devices_.push_back(d);
  }
  torch::NoGradGuard no_grad;
  for (auto& item : model_->named_parameters(true)) item.value().set_data(item.value().to(param_device.at(item.key())));
}

torch::Tensor DevicePlacement::forward(const torch::Tensor& input) {
  torch::Tensor x = input;
  for (size_t i = 0; i < blocks_.size(); ++i) x = blocks_[i].forward(x.to(block_devices_[i]));
  return x;
}

torch::Tensor DevicePlacement::loss(const models::Batch& batch) {
  torch::Tensor out = forward(batch.input);
  models::Batch on_device{batch.input, batch.target.to(out.device())};
  return model_->criterion(out, on_device);
}

}  // namespace paratorch::pipeline
