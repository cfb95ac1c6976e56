// src/train/checkpoint.h — the trainer's side of checkpoints: reading one to
// `--resume` (errors that say what to pass on the command line) and refusing
// one that does not fit the config. The folder format, its writers and its
// reader are the library's (checkpoint/step_folder.h,
// checkpoint/sharded_folder.h).
//
// Example:
///   checkpoints::Checkpoint back = read_checkpoint_to_resume(out_dir, engine.parameters_to_load());
///   require_compatible(back, config);
#pragma once
#include "checkpoint/step_folder.h"
#include "train/config.h"

#include <string>

namespace paratorch::train {

/// read_checkpoint for `--resume`: a checkpoint that cannot be read also
/// says what to do on the command line (the library's load_checkpoint and
/// `paratorch checkpoint export` use read_checkpoint's own words).
checkpoints::Checkpoint read_checkpoint_to_resume(const std::string& path, const formats::ShardPlan& plan = {});

/// UsageError unless `ckpt` was written for the same model as `config`
/// (every [model] key and the optimizer) and its step is below
/// config.train.steps.
void require_compatible(const checkpoints::Checkpoint& ckpt, const Config& config);

}  // namespace paratorch::train
