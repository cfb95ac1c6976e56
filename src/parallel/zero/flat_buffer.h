// src/parallel/zero/flat_buffer.h — where each parameter lives in a flat, sharded buffer.
//
// ZeRO (Rajbhandari et al., 2019, §5) keeps model state in flat contiguous
// buffers split into N equal shards, one per data-parallel rank. A FlatLayout
// is the arithmetic of one such buffer ("unit": a DDP-like bucket for stages
// 1–2, one model block for stage 3): parameters are laid out back to back in
// order, the total is padded to a multiple of N, and rank r owns elements
// [r·S, (r+1)·S) with S = padded / N. A parameter of any shape may straddle a
// shard boundary; on each rank it overlaps the shard in at most one
// contiguous range (a Piece). Equal shard sizes are what reduce-scatter and
// all-gather need.
//
// The layout holds no tensors; views() and shard_decay_mask() apply it to
// buffers the caller owns.
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

namespace paratorch::zero {

struct FlatParam {
  std::string name;
  std::vector<int64_t> shape;
  bool decays = false;  // weight decay applies (the optimizer's rule: dim >= 2)
  int64_t numel() const;
};

/// The part of one parameter that falls in this rank's shard.
struct Piece {
  size_t param = 0;         // index into FlatLayout::params()
  int64_t param_offset = 0; // first element, in the parameter's flattened order
  int64_t shard_offset = 0; // where it sits in the shard
  int64_t length = 0;
};

class FlatLayout {
 public:
  /// `ranks` shards, this rank is `rank` (0 <= rank < ranks).
  FlatLayout(std::vector<FlatParam> params, int ranks, int rank);

  const std::vector<FlatParam>& params() const { return params_; }
  int64_t offset(size_t param) const { return offsets_[param]; }
  /// Sum of the parameters' sizes, before padding.
  int64_t numel() const { return numel_; }
  /// numel() rounded up to a multiple of ranks().
  int64_t padded_numel() const { return shard_numel_ * ranks_; }
  int64_t shard_numel() const { return shard_numel_; }
  int64_t shard_begin() const { return shard_numel_ * rank_; }
  int ranks() const { return ranks_; }
  int rank() const { return rank_; }
  /// The parameters' pieces in this rank's shard, in buffer order.
  const std::vector<Piece>& pieces() const { return pieces_; }

  /// One view per parameter (its shape) into a full flat buffer of padded_numel().
  std::vector<torch::Tensor> views(const torch::Tensor& flat) const;
  /// 1-D views of this rank's pieces into a shard buffer of shard_numel().
  std::vector<torch::Tensor> piece_views(const torch::Tensor& shard) const;
  /// 1.0 where the shard element belongs to a decaying parameter, else 0
  /// (padding included), as float.
  torch::Tensor shard_decay_mask() const;

 private:
  std::vector<FlatParam> params_;
  std::vector<int64_t> offsets_;
  std::vector<Piece> pieces_;
  int64_t numel_ = 0, shard_numel_ = 0;
  int ranks_ = 1, rank_ = 0;
};

}  // namespace paratorch::zero
