// src/checkpoint/step_folder.h — checkpoint folders on disk: one step
// folder per checkpoint under a root, `latest` naming the newest; read back
// with every byte checked; and the earlier single-file format's writer.
//
// Every paratorch writer now writes the sharded format
// (checkpoint/sharded_folder.h: shard files and index.json). The earlier
// format, which checkpoints written before still have, is one folder
// <out_dir>/checkpoints/step-NNNNNN/ holding
//   model.safetensors      every parameter as a full, unsharded tensor under
//                          the model's own names (nanoGPT's for gpt)
//   optimizer.safetensors  optimizer state by parameter name, "step", and the
//                          torch CPU generator state ("trainer.rng_cpu")
//   config.toml            the resolved config of the run that wrote it
//   manifest.json          format, step, layout, world size, and each file's
//                          size and FNV-1a 64 checksum; written last
// read_checkpoint reads both. write_checkpoint still writes the earlier
// format, so the tests can check that such checkpoints keep loading. Both
// formats assemble the folder under a temporary name and rename it into
// place, then replace checkpoints/latest atomically, so a crash at any
// moment leaves the previous checkpoint whole and `latest` pointing at it.
//
// Example:
///   Checkpoint back = read_checkpoint(out_dir + "/checkpoints");  // follows latest
///   for (auto& [name, tensor] : back.model) ...
#pragma once
#include "formats/sharded_checkpoint.h"

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>

namespace paratorch::checkpoints {

struct Checkpoint {
  int64_t step = 0;         // optimizer steps completed
  std::string config_toml;  // to_toml of the writer's config
  std::string layout;       // "dp=2,pp=1,tp=1"
  int world_size = 1;
  std::map<std::string, torch::Tensor> model;      // full tensors by parameter name
  std::map<std::string, torch::Tensor> optimizer;  // by "<parameter>.<state>", "step", "trainer.*"
};

/// How many step folders write_checkpoint keeps (older ones are removed
/// only after a newer one is complete).
constexpr int kCheckpointsKept = 3;

/// Writes `ckpt` under `root` (created if missing) in the earlier single-file
/// format and points root/latest at it (tests: old checkpoints keep
/// loading). Returns the step folder. Throws RuntimeFailure naming the path.
std::string write_checkpoint(const std::string& root, const Checkpoint& ckpt);

/// Reads a step folder, or the folder `latest` names when `path` holds one
/// (a checkpoints folder or a run's out_dir), in either format: whole
/// tensors (manifest.json) or sharded (index.json, checkpoint/sharded_folder.h).
/// A parameter-server run's out_dir (one server-K folder per server) reads
/// as one checkpoint: its pieces joined into whole tensors, at the oldest
/// server's step.
/// Every byte used is checked against its size and checksum first. From a
/// sharded folder only the parameters `plan` names are read (all when it is
/// empty), with their optimizer state and the state of no parameter
/// ("step"); a parameter's tensors come back as the tp shard the plan gives
/// where the checkpoint holds that same split (else whole: TpShards's
/// local_part takes either). Throws RuntimeFailure saying what is wrong.
Checkpoint read_checkpoint(const std::string& path, const formats::ShardPlan& plan = {});
/// The step folder `path` means: itself, or the one `latest` names inside
/// it (or inside path/checkpoints).
std::string resolve_step_folder(const std::string& path);

/// "step-000400".
std::string step_folder_name(int64_t step);

/// Moves the finished `tmp_dir` to root/step-NNNNNN (a folder already there
/// is replaced, and put back if the rename fails), fsyncs `root`, points
/// root/latest at it and prunes to kCheckpointsKept. RuntimeFailure naming
/// the path.
void commit_step_folder(const std::string& root, const std::string& tmp_dir, int64_t step);

/// FNV-1a 64 of `bytes`, as 16 hex digits.
std::string fnv1a64_hex(const std::string& bytes);

}  // namespace paratorch::checkpoints
