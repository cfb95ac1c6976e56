// src/tensor_parallel/shard.h — how one parameter is split over the tp group.
//
// A shard is a slice of the parameter's full, layout-independent tensor
// (paratorch/init.h), so every tp size starts from the same model. Fused
// parameters (gpt's qkv projection: [q; k; v] stacked along dim 0) are split
// part by part: rank r holds chunk r of q, of k and of v, so its heads are
// whole. assemble() is the inverse, used by full_parameters().
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

namespace paratorch::tensor_parallel {

struct ShardSpec {
  int dim = -1;    // split dimension; -1 = replicated (whole on every rank)
  int parts = 1;   // fused sub-blocks along dim, each split separately
  int rank = 0;    // this rank's index in the tp group
  int size = 1;    // tp group size
  /// Replicated parameter whose gradient is a partial sum per tp rank (it is
  /// applied to a slice of the sequence under sequence parallelism): the
  /// engine all-reduces its gradient over tp after backward.
  bool partial_grad = false;

  bool sharded() const { return dim >= 0 && size > 1; }
  /// The full tensor's shape given this rank's shard shape.
  std::vector<int64_t> full_shape(torch::IntArrayRef shard) const;
  /// This rank's slice of `full` (contiguous copy).
  torch::Tensor slice(const torch::Tensor& full) const;
  /// The full tensor from every rank's shard, in tp-rank order.
  torch::Tensor assemble(const std::vector<torch::Tensor>& shards) const;
};

}  // namespace paratorch::tensor_parallel

namespace paratorch::tensor_parallel {

/// Implemented by modules whose parameters are split over the tp group, so
/// a model can list every parameter's ShardSpec under its full name.
class ShardedModule {
 public:
  virtual ~ShardedModule() = default;
  /// Spec of this module's own parameter `local_name` ("weight", "bias").
  virtual ShardSpec shard_spec(const std::string& local_name) const = 0;
};

}  // namespace paratorch::tensor_parallel
