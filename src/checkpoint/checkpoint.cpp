// src/checkpoint/checkpoint.cpp — the public checkpoint API
// (paratorch/checkpoint.h) over the folder format the trainer writes
// (checkpoint/sharded_folder.h: shard files, index.json with regions and
// checksums, committed atomically); it reads the earlier single-file format too.
#include <paratorch/checkpoint.h>
#include <paratorch/errors.h>

#include "checkpoint/sharded_folder.h"
#include "checkpoint/step_folder.h"

namespace paratorch {

TrainingState training_state(const torch::nn::Module& module, const torch::optim::Optimizer& optimizer, int64_t step) {
  TrainingState state;
  state.step = step;
  for (const auto& item : module.named_parameters(/*recurse=*/true))
    state.model[item.key()] = item.value().detach().to(torch::kCPU).clone();
  state.optimizer = optimizer_state_by_name(optimizer, module);
  state.optimizer["step"] = torch::tensor({step}, torch::kLong);
  return state;
}

std::string save_checkpoint(const std::string& root, const TrainingState& state, Communicator* comm) {
  if (root.empty()) throw UsageError("paratorch: save_checkpoint needs a folder (root), got an empty path");
  checkpoints::Checkpoint ckpt;
  ckpt.step = state.step;
  ckpt.config_toml = state.config;
  ckpt.layout = state.layout;
  ckpt.model = state.model;  // only rank 0's are written
  ckpt.optimizer = state.optimizer;
  // Collective with `comm`: a failure on rank 0 reaches every rank as the same error.
  return checkpoints::write_whole_checkpoint(root, ckpt, comm);
}

std::string save_sharded_checkpoint(const std::string& root, int64_t step, const std::vector<CheckpointSlice>& mine,
                                    Communicator& comm, const std::string& layout, const std::string& config) {
  if (root.empty()) throw UsageError("paratorch: save_sharded_checkpoint needs a folder (root), got an empty path");
  std::vector<formats::Piece> pieces;
  for (const auto& s : mine) {
    if (!s.data.defined() || s.name.empty())
      throw UsageError("paratorch: save_sharded_checkpoint: a CheckpointSlice has no name or no data");
    int64_t whole = 1;
    for (int64_t d : s.whole_shape) whole *= d;
    if (s.flat_offset < 0 || s.flat_offset + s.data.numel() > whole)
      throw UsageError("paratorch: save_sharded_checkpoint: CheckpointSlice '" + s.name + "' covers elements [" +
                       std::to_string(s.flat_offset) + ", " + std::to_string(s.flat_offset + s.data.numel()) +
                       ") of a tensor of " + std::to_string(whole));
    formats::Piece p;
    p.section = s.optimizer_state ? "optimizer" : "model";
    p.name = s.name;
    p.whole_shape = s.whole_shape;
    p.region.flat_offset = s.flat_offset;
    p.data = s.data.detach();
    pieces.push_back(std::move(p));
  }
  checkpoints::ShardedCheckpointInfo info{step, layout, config};
  return checkpoints::write_sharded_checkpoint(root, pieces, info, comm);
}

TrainingState load_checkpoint(const std::string& dir) {
  checkpoints::Checkpoint ckpt = checkpoints::read_checkpoint(dir);
  TrainingState state;
  state.step = ckpt.step;
  state.model = std::move(ckpt.model);
  state.optimizer = std::move(ckpt.optimizer);
  state.config = std::move(ckpt.config_toml);
  state.layout = std::move(ckpt.layout);
  return state;
}

void load_parameters(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& tensors,
                     const std::function<torch::Tensor(const std::string&, const torch::Tensor&)>& take) {
  torch::NoGradGuard no_grad;
  for (auto& item : module.named_parameters(/*recurse=*/true)) {
    auto it = tensors.find(item.key());
    if (it == tensors.end())
      throw RuntimeFailure("paratorch: the checkpoint has no parameter '" + item.key() +
                           "'; it was written for another model (or under other names)");
    const torch::Tensor part = take ? take(item.key(), it->second) : it->second;
    if (!part.sizes().equals(item.value().sizes()))
      throw RuntimeFailure("paratorch: parameter '" + item.key() + "' is " + c10::str(item.value().sizes()) +
                           " here and " + c10::str(part.sizes()) + " from the checkpoint" +
                           (take ? " after `take`" : "; pass load_parameters a `take` that slices this rank's part"));
    item.value().copy_(part);
  }
}

}  // namespace paratorch
