// src/tensor_parallel/layers.h — Megatron-LM's tensor-parallel layers
// (Shoeybi et al. 2019, "Megatron-LM", §3): for Y = f(XW),
//   ColumnParallelLinear  W split by output features: each rank computes its
//                         columns of Y with no communication (copy_to_tp on
//                         the input: its gradient is summed over ranks).
//   RowParallelLinear     W split by input features, X already split: the
//                         partial products are summed (reduce_from_tp), and
//                         the bias is added once, after the sum.
//   VocabParallelEmbedding  rows split by vocabulary range; each rank looks up
//                         the ids it owns (others give 0) and the results
//                         are summed over the group.
// Parameters keep torch::nn::Linear / Embedding's names ("weight", "bias"),
// so the model's full names are the unsplit model's. With an inactive
// context (tp = 1) each layer is exactly its plain counterpart.
// Under sequence parallelism (Korthikanti et al. 2022) the column layer
// all-gathers the sequence-sharded input and the row layer reduce-scatters
// its output along the sequence instead of all-reducing it.
#pragma once
#include "tensor_parallel/context.h"
#include "tensor_parallel/shard.h"

#include <torch/torch.h>

namespace paratorch::tensor_parallel {

/// Throws UsageError when `tp` does not divide `value`:
/// "paratorch: <what> = <value> is not divisible by tp = <tp>; valid tp: 1, 2, ...".
void require_divisible(const std::string& what, int64_t value, int tp);

class ColumnParallelLinearImpl : public torch::nn::Module, public ShardedModule {
 public:
  /// `parts` > 1: the output features are `parts` fused blocks (qkv = 3),
  /// each split over the group so a rank holds matching slices of all.
  ColumnParallelLinearImpl(int64_t in, int64_t out, TensorParallelContext tp, bool bias = true,
                           bool gather_output = false, int parts = 1);
  torch::Tensor forward(const torch::Tensor& x);
  ShardSpec shard_spec(const std::string& local_name) const override;
  torch::Tensor weight, bias;  // [out/tp, in], [out/tp]

 private:
  TensorParallelContext tp_;
  bool gather_output_;
  int parts_;
};
TORCH_MODULE(ColumnParallelLinear);

class RowParallelLinearImpl : public torch::nn::Module, public ShardedModule {
 public:
  RowParallelLinearImpl(int64_t in, int64_t out, TensorParallelContext tp, bool bias = true,
                        bool input_is_parallel = true);
  torch::Tensor forward(const torch::Tensor& x);
  ShardSpec shard_spec(const std::string& local_name) const override;
  torch::Tensor weight, bias;  // [out, in/tp], [out] (whole on every rank)

 private:
  TensorParallelContext tp_;
  bool input_is_parallel_;
};
TORCH_MODULE(RowParallelLinear);

class VocabParallelEmbeddingImpl : public torch::nn::Module, public ShardedModule {
 public:
  VocabParallelEmbeddingImpl(int64_t num, int64_t dim, TensorParallelContext tp);
  /// Embeddings of `ids`, summed over the group (whole on every rank).
  torch::Tensor forward(const torch::Tensor& ids);
  /// This rank's masked lookup, before the sum (callers that reduce-scatter).
  torch::Tensor forward_partial(const torch::Tensor& ids);
  ShardSpec shard_spec(const std::string& local_name) const override;
  int64_t first_row() const { return first_; }
  torch::Tensor weight;  // [num/tp, dim]: rows [first_row, first_row + num/tp)

 private:
  TensorParallelContext tp_;
  int64_t first_;
};
TORCH_MODULE(VocabParallelEmbedding);

/// Per-row cross-entropy of `logits` [N, V/tp] (this rank's vocabulary slice,
/// as VocabParallelEmbedding splits it) against `target` [N] (full ids),
/// without gathering the logits: the row max and the sum of exponentials
/// are all-reduced over the group. Returns [N] losses (same on every rank).
torch::Tensor vocab_parallel_cross_entropy(const torch::Tensor& logits, const torch::Tensor& target,
                                           const TensorParallelContext& tp);

}  // namespace paratorch::tensor_parallel
