// src/parallel/zero/flat_buffer.cpp — see flat_buffer.h.
#include "parallel/zero/flat_buffer.h"

#include <paratorch/errors.h>

#include <algorithm>

namespace paratorch::zero {

int64_t FlatParam::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

FlatLayout::FlatLayout(std::vector<FlatParam> params, int ranks, int rank)
    : params_(std::move(params)), ranks_(ranks), rank_(rank) {
  if (ranks < 1 || rank < 0 || rank >= ranks)
    throw UsageError("paratorch: flat buffer rank " + std::to_string(rank) + " outside 0.." +
                     std::to_string(ranks - 1));
  for (const auto& p : params_) {
    offsets_.push_back(numel_);
    numel_ += p.numel();
  }
  shard_numel_ = (numel_ + ranks - 1) / ranks;
  const int64_t begin = shard_begin(), end = begin + shard_numel_;
  for (size_t i = 0; i < params_.size(); ++i) {
    const int64_t lo = std::max(begin, offsets_[i]), hi = std::min(end, offsets_[i] + params_[i].numel());
    if (lo < hi) pieces_.push_back(Piece{i, lo - offsets_[i], lo - begin, hi - lo});
  }
}

std::vector<torch::Tensor> FlatLayout::views(const torch::Tensor& flat) const {
  TORCH_CHECK(flat.dim() == 1 && flat.numel() == padded_numel(), "flat buffer of ", flat.numel(),
              " elements, layout needs ", padded_numel());
  std::vector<torch::Tensor> out;
  for (size_t i = 0; i < params_.size(); ++i)
    out.push_back(flat.narrow(0, offsets_[i], params_[i].numel()).view(params_[i].shape));
  return out;
}

std::vector<torch::Tensor> FlatLayout::piece_views(const torch::Tensor& shard) const {
  TORCH_CHECK(shard.dim() == 1 && shard.numel() == shard_numel_, "shard of ", shard.numel(),
              " elements, layout needs ", shard_numel_);
  std::vector<torch::Tensor> out;
  for (const auto& piece : pieces_) out.push_back(shard.narrow(0, piece.shard_offset, piece.length));
  return out;
}

torch::Tensor FlatLayout::shard_decay_mask() const {
  auto mask = torch::zeros({shard_numel_});
  for (const auto& piece : pieces_)
    if (params_[piece.param].decays) mask.narrow(0, piece.shard_offset, piece.length).fill_(1.0);
  return mask;
}

}  // namespace paratorch::zero
