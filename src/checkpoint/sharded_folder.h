// src/checkpoint/sharded_folder.h — the collective save of a sharded
// checkpoint, and its reading into a Checkpoint (docs/checkpoints.md).
//
// Saving (every rank of the world calls it, with the pieces it holds:
// Engine::checkpoint_pieces):
//  1. rank 0 makes root/step-NNNNNN.tmp-<pid>; every rank writes its own
//     shard file there, in parallel, fsynced (no tensor crosses the network);
//  2. the ranks exchange their pieces' records (names, regions, checksums:
//     a few hundred bytes per tensor) and whether their write succeeded;
//  3. rank 0 writes config.toml, then index.json last, fsyncs the folder,
//     renames it into place and moves `latest` (commit_step_folder).
// A rank that dies before 3 leaves a .tmp folder without an index: never
// read, removed by the next save of that step; `latest` still names the
// previous checkpoint. A write that fails removes the folder and every rank
// throws the same RuntimeFailure naming the rank and file.
//
// Example:
///   auto pieces = engine.checkpoint_pieces(optimizer);        // this rank's
///   write_sharded_checkpoint(out_dir + "/checkpoints", *pieces, info, *world.comm());
///   Checkpoint back = read_checkpoint(out_dir, engine.parameters_to_load());
#pragma once
#include "formats/sharded_checkpoint.h"
#include "checkpoint/step_folder.h"
#include <paratorch/communicator.h>

#include <string>
#include <vector>

namespace paratorch::checkpoints {

struct ShardedCheckpointInfo {
  int64_t step = 0;
  std::string layout;       // "dp=2,pp=2,tp=1"
  std::string config_toml;  // stored as config.toml
};

/// Collective over `world`: see above. Returns the step folder.
std::string write_sharded_checkpoint(const std::string& root, const std::vector<formats::Piece>& mine,
                                     const ShardedCheckpointInfo& info, Communicator& world);

/// `ckpt`'s whole tensors as a sharded checkpoint that one writer holds:
/// this process alone (null `world`), or rank 0 of `world` (collective; the
/// other ranks' tensors are not read). Same folder, index and commit as above.
std::string write_whole_checkpoint(const std::string& root, const Checkpoint& ckpt, Communicator* world = nullptr);

/// The tensors of a sharded step folder `plan` asks for (read_checkpoint).
Checkpoint read_sharded_checkpoint(const std::string& dir, const formats::ShardPlan& plan);

/// Every tensor as whole pieces, tensor i of the sorted names written by rank
/// i mod world (engines that cannot say what they hold gather first).
std::vector<formats::Piece> spread_whole_tensors(const std::map<std::string, torch::Tensor>& model,
                                                 const std::map<std::string, torch::Tensor>& optimizer, int rank,
                                                 int world);

}  // namespace paratorch::checkpoints
