// src/parallel/checkpoint/checkpoint_pieces.h — what one rank writes into a sharded
// checkpoint, from what it holds, with no communication (docs/checkpoints.md).
//
// Every engine composes the same three rules, so that each element of each
// whole tensor is written exactly once across the world:
//  - a tp-sharded tensor is written by every tp rank (its own shard, tagged
//    with the ShardSpec); a tp-replicated one by tp rank 0 only;
//  - a tensor every dp replica holds whole is written by one replica, chosen
//    by the name's hash, so the writes spread over the replicas; a ZeRO piece
//    (a flat range only this dp rank holds) is written by its holder;
//  - state that belongs to no parameter ("step") is written by world rank 0.
// A pipeline stage adds only the parameters it owns (a tied copy is written
// by its owner stage).
//
// Example (a data-parallel engine with tp shards):
//   CheckpointPieces out(tp, coords.dp, layout.dp, world_rank);
//   for (auto& [name, p] : named_parameters()) out.add_parameter(name, p);
//   out.add_optimizer_state(optimizer.local_state());
//   std::vector<formats::Piece> mine = out.take();
#pragma once
#include "formats/sharded_checkpoint.h"
#include "optim/optimizer.h"
#include "parallel/tensor_parallel/tp_shards.h"

#include <map>
#include <set>
#include <string>
#include <vector>

namespace paratorch::parallel {

/// Where this rank's tp shard of parameter `name` lies (the split fields;
/// split_dim -1 when the parameter is not split), at flat offset `flat_offset`.
formats::PieceRegion tp_region(const TpShards& tp, const std::string& name, int64_t flat_offset = 0);

class CheckpointPieces {
 public:
  /// `tp`: the engine's tp component (specs and group); this rank's dp
  /// coordinate among `dp_size` replicas; its world rank.
  CheckpointPieces(const TpShards& tp, int dp_rank, int dp_size, int world_rank);

  /// Parameter `name` as this rank holds it whole (its tp shard, if split),
  /// replicated over dp. `owned` false: a copy another rank writes (tied).
  void add_parameter(const std::string& name, const torch::Tensor& local, bool owned = true);
  /// Elements [flat_offset, +numel) of parameter `name`, whose tensor on this
  /// rank (its tp shard) is shaped `local_shape`: a ZeRO piece.
  void add_parameter_piece(const std::string& name, const std::vector<int64_t>& local_shape,
                           const torch::Tensor& data, int64_t flat_offset);
  /// The optimizer's local state. Entries "<parameter>.<kind>" of a
  /// parameter added above follow that parameter's placement; others are
  /// global. Parameters never added (not owned) have their state skipped.
  void add_optimizer_state(const std::vector<optim::LocalState>& state);
  /// Tensors equal on every rank, written by world rank 0 (loss scaler, RNG).
  void add_global(const std::string& section, const std::string& name, const torch::Tensor& tensor);

  std::vector<formats::Piece> take() { return std::move(pieces_); }

 private:
  struct Held {
    std::vector<int64_t> local_shape;
    bool sharded_over_dp = false;  // ZeRO pieces
    bool owned = true;
  };
  formats::PieceRegion region_of(const std::string& name, int64_t flat_offset) const;
  bool writes_whole(const std::string& name) const;  // the dp replica and tp rank that write it
  bool tp_writes(const std::string& name) const;
  void add(const std::string& section, const std::string& key, const std::string& param, const torch::Tensor& data,
           int64_t flat_offset);

  const TpShards& tp_;
  int dp_rank_, dp_size_, world_rank_;
  std::map<std::string, Held> held_;
  std::vector<formats::Piece> pieces_;
};

}  // namespace paratorch::parallel
