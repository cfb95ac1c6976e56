// paratorch/checkpoint.h — save and load a model and its optimizer state by
// full parameter name, in safetensors: the format `paratorch train` writes
// (docs/checkpoints.md), readable by Python (safetensors.torch.load_file).
//
// save_checkpoint(root, ...) writes root/step-NNNNNN/ and points root/latest
// at it (the three newest are kept). A step folder holds
// shard-00000-of-NNNNN.safetensors (every parameter as a full, unsharded
// tensor under its name, and the optimizer state as "<parameter>.<state>"
// plus "step"), config.toml (free text; the CLI puts its config there) and
// index.json (each tensor's shape, file, byte range and checksum; written
// last, so a folder without one was never finished). Writes are atomic: a
// crash leaves the previous checkpoint whole. load_checkpoint also reads
// the sharded folders of any `paratorch train` layout, and the single-file
// folders (model.safetensors, optimizer.safetensors, manifest.json) that
// earlier versions wrote.
//
// Any layout to any layout: a checkpoint holds full tensors by name, so
// saving needs each layout's full tensors (DDP: the module's own; tensor
// parallel, ZeRO, pipeline: their full-parameter gathers) and loading gives
// each rank the slice it owns (load_parameters' `take`).
//
// Example (a plain module or a DDP replica, with any torch::optim optimizer):
///   paratorch::save_checkpoint("ckpt", paratorch::training_state(*model, opt, 100), world.comm().get());
///   auto state = paratorch::load_checkpoint("ckpt");      // every rank; follows ckpt/latest
///   paratorch::load_parameters(*model, state.model);
///   paratorch::load_optimizer_state(opt, *model, state.optimizer);
#pragma once
#include <paratorch/communicator.h>

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>

namespace paratorch {

/// What a checkpoint holds: full tensors by name.
struct TrainingState {
  int64_t step = 0;                                // optimizer steps completed
  std::map<std::string, torch::Tensor> model;      // parameter name -> full tensor
  std::map<std::string, torch::Tensor> optimizer;  // "<parameter>.<state>" and "step"
  std::string config;                              // free text stored as config.toml
  std::string layout = "dp=1,pp=1,tp=1";           // the writer's layout, for the index
};

/// The optimizer state of `optimizer` (torch::optim SGD, Adam, AdamW,
/// Adagrad or RMSprop) by the names `module` gives its parameters:
/// "<name>.momentum_buffer", "<name>.exp_avg", "<name>.exp_avg_sq", ... and
/// "<name>.step". Parameters without state yet are left out. UsageError for
/// an optimizer of another kind, or one holding parameters `module` lacks.
std::map<std::string, torch::Tensor> optimizer_state_by_name(const torch::optim::Optimizer& optimizer,
                                                             const torch::nn::Module& module);

/// The inverse: builds `optimizer`'s state for every parameter of `module`
/// named in `state`. RuntimeFailure naming a tensor of the wrong shape.
void load_optimizer_state(torch::optim::Optimizer& optimizer, const torch::nn::Module& module,
                          const std::map<std::string, torch::Tensor>& state);

/// `module`'s parameters and `optimizer`'s state at `step`.
TrainingState training_state(const torch::nn::Module& module, const torch::optim::Optimizer& optimizer, int64_t step);

/// Writes `state` as root/step-NNNNNN (root is created if missing) and
/// points root/latest at it; returns that folder. With `comm`, rank 0 writes
/// and every rank returns once the folder is complete, or throws if rank 0
/// failed (collective); without, this process writes. RuntimeFailure naming
/// the path when it cannot be written.
std::string save_checkpoint(const std::string& root, const TrainingState& state, Communicator* comm = nullptr);

/// A piece of a whole tensor that this rank holds, for save_sharded_checkpoint:
/// `data` holds elements [flat_offset, flat_offset + data.numel()) of tensor
/// `name` (shape `whole_shape`) in row-major order, as a ZeRO or FSDP shard
/// holds a parameter's piece; a whole tensor is the piece at offset 0.
struct CheckpointSlice {
  std::string name;  ///< a parameter's name, or "<parameter>.<state>" / "step" with optimizer_state
  std::vector<int64_t> whole_shape;
  int64_t flat_offset = 0;
  torch::Tensor data;
  bool optimizer_state = false;  ///< TrainingState::optimizer rather than ::model
};

/// Collective over `comm`: each rank writes the slices it holds into its own
/// shard file of root/step-NNNNNN (in parallel; no tensor crosses the
/// network), the index records where every slice lies, and rank 0 commits
/// the folder and points root/latest at it; returns that folder. The same
/// format, atomicity and checks as save_checkpoint: load_checkpoint reads
/// whole tensors back, into any layout. Each element must come from exactly
/// one rank (FullyShardedModule::checkpoint_slices gives a rank's own).
/// RuntimeFailure naming the rank and file when a write fails.
std::string save_sharded_checkpoint(const std::string& root, int64_t step, const std::vector<CheckpointSlice>& mine,
                                    Communicator& comm, const std::string& layout = "", const std::string& config = "");

/// Reads a step folder (or the one `latest` names inside `dir`), every
/// file's size and checksum checked first. RuntimeFailure saying what is wrong.
TrainingState load_checkpoint(const std::string& dir);

/// Copies `tensors` into `module`'s parameters by name. `take(name, full)`
/// returns this rank's part of a full tensor (default: all of it), so a
/// sharded module loads a checkpoint written by any layout. RuntimeFailure
/// naming a missing parameter or a shape that does not fit.
void load_parameters(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& tensors,
                     const std::function<torch::Tensor(const std::string& name, const torch::Tensor& full)>& take = {});

}  // namespace paratorch
