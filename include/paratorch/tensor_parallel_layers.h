// paratorch/tensor_parallel_layers.h — Megatron-LM's tensor-parallel layers,
// the autograd-aware mappings between their regions, and the vocabulary-
// parallel cross-entropy (Shoeybi et al. 2019, "Megatron-LM", §3; sequence
// parallelism: Korthikanti et al. 2022). The counterpart of
// megatron.core.tensor_parallel. Most users apply them through
// parallelize() (<paratorch/tensor_parallel.h>); build them directly to
// write a tensor-parallel model by hand.
//
// Example (Megatron's MLP Z = GeLU(X W1) W2 over the tp group):
///   namespace tp = paratorch::tensor_parallel;
///   auto group = world.comm();                                   // or ProcessGroups::tp()
///   tp::ColumnParallelLinear fc(tp::ColumnParallelLinearOptions(d, 4 * d), group);
///   tp::RowParallelLinear proj(tp::RowParallelLinearOptions(4 * d, d), group);
///   auto z = proj(torch::gelu(fc(x)));                           // x, z whole on every rank
//
// Every tp rank must run the same layers in the same order (each forward and
// backward is collective over the group). Parameters keep
// torch::nn::Linear / Embedding's names ("weight", "bias") and their
// initialization: each layer draws its whole weights as the plain layer
// would and keeps its slice, so with every tp rank seeded alike
// (torch::manual_seed) the slices join into the plain layer's weights. With
// a group of one rank (or none) every layer is exactly its plain
// counterpart. (Drawing the whole tensor costs its memory once, while the
// layer is built.)
#pragma once
#include <paratorch/communicator.h>

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

namespace paratorch::tensor_parallel {

/// What a tensor-parallel layer needs to know: the tp group and whether
/// sequence parallelism is on. A default-constructed context means tp = 1.
struct TensorParallelContext {
  /// The tp group; null means tp = 1.
  std::shared_ptr<Communicator> comm;
  /// Sequence parallelism: regions between the tp layers hold a slice of the
  /// sequence (dim 1); all-gather / reduce-scatter replace the all-reduces.
  bool sequence_parallel = false;

  int rank() const { return comm ? comm->rank() : 0; }
  int size() const { return comm ? comm->size() : 1; }
  bool active() const { return size() > 1; }
  bool sp() const { return sequence_parallel && active(); }
};

/// How one parameter is split over the tp group. A shard is a slice of the
/// parameter's full tensor; fused parameters (a qkv projection: [q; k; v]
/// stacked along dim 0) are split part by part, so rank r holds chunk r of
/// q, of k and of v and its attention heads are whole.
struct ShardSpec {
  int dim = -1;    ///< split dimension; -1 = replicated (whole on every rank)
  int parts = 1;   ///< fused sub-blocks along dim, each split separately
  int rank = 0;    ///< this rank's index in the tp group
  int size = 1;    ///< tp group size
  /// Replicated parameter whose gradient is a partial sum per tp rank (used
  /// on a slice of the sequence under sequence parallelism): its gradient
  /// must be summed over the group after backward.
  bool partial_grad = false;

  bool sharded() const { return dim >= 0 && size > 1; }
  /// The full tensor's shape given this rank's shard shape.
  std::vector<int64_t> full_shape(torch::IntArrayRef shard) const;
  /// This rank's slice of `full` (contiguous copy).
  torch::Tensor slice(const torch::Tensor& full) const;
  /// The full tensor from every rank's shard, in tp-rank order.
  torch::Tensor assemble(const std::vector<torch::Tensor>& shards) const;
};

/// Implemented by modules whose parameters are split over the tp group, so
/// shard_specs() can list every parameter's ShardSpec under its full name.
class ShardedModule {
 public:
  virtual ~ShardedModule() = default;
  /// Spec of this module's own parameter `local_name` ("weight", "bias").
  virtual ShardSpec shard_spec(const std::string& local_name) const = 0;
};

/// Like torch::nn::LinearOptions, for ColumnParallelLinear.
struct ColumnParallelLinearOptions {
  ColumnParallelLinearOptions(int64_t in_features, int64_t out_features)
      : in_features_(in_features), out_features_(out_features) {}
  TORCH_ARG(int64_t, in_features);
  TORCH_ARG(int64_t, out_features);
  TORCH_ARG(bool, bias) = true;
  /// All-gather the output so every rank holds all out_features.
  TORCH_ARG(bool, gather_output) = false;
  /// out_features are this many fused blocks (qkv = 3), each split over the group.
  TORCH_ARG(int, fused_parts) = 1;
 public:
  /// UsageError naming the field when out_features does not split into
  /// fused_parts blocks of a size `tp_size` divides.
  void validate(int tp_size) const;
};

/// Like torch::nn::LinearOptions, for RowParallelLinear.
struct RowParallelLinearOptions {
  RowParallelLinearOptions(int64_t in_features, int64_t out_features)
      : in_features_(in_features), out_features_(out_features) {}
  TORCH_ARG(int64_t, in_features);
  TORCH_ARG(int64_t, out_features);
  TORCH_ARG(bool, bias) = true;
  /// The input already holds this rank's in_features / tp slice (the output
  /// of a ColumnParallelLinear); false: split a whole input first.
  TORCH_ARG(bool, input_is_parallel) = true;
 public:
  /// UsageError naming the field when `tp_size` does not divide in_features.
  void validate(int tp_size) const;
};

/// Like torch::nn::EmbeddingOptions, for VocabParallelEmbedding.
struct VocabParallelEmbeddingOptions {
  VocabParallelEmbeddingOptions(int64_t num_embeddings, int64_t embedding_dim)
      : num_embeddings_(num_embeddings), embedding_dim_(embedding_dim) {}
  TORCH_ARG(int64_t, num_embeddings);
  TORCH_ARG(int64_t, embedding_dim);
 public:
  /// UsageError naming the field when `tp_size` does not divide num_embeddings.
  void validate(int tp_size) const;
};

/// Y = X Wᵀ + b with W split by output features: each rank computes its
/// out_features / tp columns of Y with no communication; the input's
/// gradient is summed over the group (copy_to_tp). Under sequence
/// parallelism the input is all-gathered along the sequence instead.
class ColumnParallelLinearImpl : public torch::nn::Module, public ShardedModule {
 public:
  ColumnParallelLinearImpl(const ColumnParallelLinearOptions& options, std::shared_ptr<Communicator> tp_group,
                           bool sequence_parallel = false);
  /// Positional form: (in, out, context, bias, gather_output, fused_parts).
  ColumnParallelLinearImpl(int64_t in, int64_t out, TensorParallelContext tp, bool bias = true,
                           bool gather_output = false, int parts = 1);
  torch::Tensor forward(const torch::Tensor& x);
  /// Called by the constructors: draws the whole layer's weights as torch::nn::Linear
  /// would (from the default generator) and keeps this rank's slice.
  void reset_parameters();
  ShardSpec shard_spec(const std::string& local_name) const override;
  const ColumnParallelLinearOptions& options() const { return options_; }
  torch::Tensor weight, bias;  ///< [out/tp, in], [out/tp]

 private:
  ColumnParallelLinearOptions options_;
  TensorParallelContext tp_;
};
TORCH_MODULE(ColumnParallelLinear);

/// Y = X Wᵀ + b with W split by input features and X split likewise: the
/// partial products are summed over the group (reduce_from_tp) and the bias
/// (whole on every rank) is added once, after the sum. Under sequence
/// parallelism the sum is reduce-scattered along the sequence instead.
class RowParallelLinearImpl : public torch::nn::Module, public ShardedModule {
 public:
  RowParallelLinearImpl(const RowParallelLinearOptions& options, std::shared_ptr<Communicator> tp_group,
                        bool sequence_parallel = false);
  /// Positional form: (in, out, context, bias, input_is_parallel).
  RowParallelLinearImpl(int64_t in, int64_t out, TensorParallelContext tp, bool bias = true,
                        bool input_is_parallel = true);
  torch::Tensor forward(const torch::Tensor& x);
  /// Called by the constructors: draws the whole layer's weights as torch::nn::Linear
  /// would (from the default generator) and keeps this rank's slice.
  void reset_parameters();
  ShardSpec shard_spec(const std::string& local_name) const override;
  const RowParallelLinearOptions& options() const { return options_; }
  torch::Tensor weight, bias;  ///< [out, in/tp], [out] (whole on every rank)

 private:
  RowParallelLinearOptions options_;
  TensorParallelContext tp_;
};
TORCH_MODULE(RowParallelLinear);

/// An embedding table split by vocabulary range: rank r owns rows
/// [r·V/tp, (r+1)·V/tp), looks up the ids it owns (others give 0) and the
/// results are summed over the group.
class VocabParallelEmbeddingImpl : public torch::nn::Module, public ShardedModule {
 public:
  VocabParallelEmbeddingImpl(const VocabParallelEmbeddingOptions& options, std::shared_ptr<Communicator> tp_group);
  /// Positional form: (num_embeddings, embedding_dim, context).
  VocabParallelEmbeddingImpl(int64_t num, int64_t dim, TensorParallelContext tp);
  /// Embeddings of `ids`, summed over the group (whole on every rank).
  torch::Tensor forward(const torch::Tensor& ids);
  /// This rank's masked lookup, before the sum (callers that reduce-scatter).
  torch::Tensor forward_partial(const torch::Tensor& ids);
  /// Called by the constructors: draws the whole table as
  /// torch::nn::Embedding would (N(0, 1), default generator) and keeps this
  /// rank's rows.
  void reset_parameters();
  ShardSpec shard_spec(const std::string& local_name) const override;
  const VocabParallelEmbeddingOptions& options() const { return options_; }
  int64_t first_row() const { return first_; }
  torch::Tensor weight;  ///< [num/tp, dim]: rows [first_row, first_row + num/tp)

 private:
  VocabParallelEmbeddingOptions options_;
  TensorParallelContext tp_;
  int64_t first_;
};
TORCH_MODULE(VocabParallelEmbedding);

/// Per-row cross-entropy of `logits` [N, V/tp] (this rank's vocabulary slice,
/// as VocabParallelEmbedding splits it) against `target` [N] (full ids),
/// without gathering the logits: the row max and the sum of exponentials
/// are all-reduced over the group. Returns [N] losses, the same on every rank.
torch::Tensor vocab_parallel_cross_entropy(const torch::Tensor& logits, const torch::Tensor& target,
                                           const TensorParallelContext& tp);

// The conjugate mappings between regions (forward | backward). With an
// inactive context each returns its input. `dim` of the sequence pair is
// the sequence dimension ([batch, seq, features] by default).
//   copy_to_tp            identity        | all-reduce   (enter a column-parallel region)
//   reduce_from_tp        all-reduce      | identity     (leave a row-parallel region)
//   scatter_to_tp         split last dim  | all-gather last
//   gather_from_tp        all-gather last | split last dim
//   scatter_to_sequence   split seq dim   | all-gather seq
//   gather_from_sequence  all-gather seq  | reduce-scatter seq  (SP: enter a column-parallel region)
//   reduce_scatter_to_sequence  reduce-scatter seq | all-gather seq  (SP: leave a row-parallel region)
torch::Tensor copy_to_tp(const torch::Tensor& x, const TensorParallelContext& tp);
torch::Tensor reduce_from_tp(const torch::Tensor& x, const TensorParallelContext& tp);
torch::Tensor scatter_to_tp(const torch::Tensor& x, const TensorParallelContext& tp);
torch::Tensor gather_from_tp(const torch::Tensor& x, const TensorParallelContext& tp);
torch::Tensor scatter_to_sequence(const torch::Tensor& x, const TensorParallelContext& tp, int64_t dim = 1);
torch::Tensor gather_from_sequence(const torch::Tensor& x, const TensorParallelContext& tp, int64_t dim = 1);
torch::Tensor reduce_scatter_to_sequence(const torch::Tensor& x, const TensorParallelContext& tp, int64_t dim = 1);

}  // namespace paratorch::tensor_parallel
