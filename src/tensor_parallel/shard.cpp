// src/tensor_parallel/shard.cpp — see shard.h.
#include "tensor_parallel/shard.h"

namespace paratorch::tensor_parallel {

std::vector<int64_t> ShardSpec::full_shape(torch::IntArrayRef shard) const {
  std::vector<int64_t> shape(shard.begin(), shard.end());
  if (sharded()) shape[static_cast<size_t>(dim)] *= size;
  return shape;
}

torch::Tensor ShardSpec::slice(const torch::Tensor& full) const {
  if (!sharded()) return full.contiguous();
  std::vector<torch::Tensor> mine;
  for (const auto& part : full.chunk(parts, dim)) mine.push_back(part.chunk(size, dim)[rank]);
  return torch::cat(mine, dim).contiguous();
}

torch::Tensor ShardSpec::assemble(const std::vector<torch::Tensor>& shards) const {
  if (!sharded()) return shards.at(static_cast<size_t>(rank));
  // Part p of the full tensor is the concatenation over ranks of each
  // shard's part p.
  std::vector<torch::Tensor> pieces;
  for (int p = 0; p < parts; ++p)
    for (const auto& s : shards) pieces.push_back(s.chunk(parts, dim)[p]);
  return torch::cat(pieces, dim);
}

}  // namespace paratorch::tensor_parallel
