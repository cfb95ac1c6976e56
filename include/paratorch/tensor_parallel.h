// paratorch/tensor_parallel.h — tensor parallelism for a user's own
// torch::nn::Module: parallelize() swaps its Linear / Embedding children for
// Megatron-LM's tensor-parallel layers (<paratorch/tensor_parallel_layers.h>),
// each initialized with this rank's slice of the child's own weights. The
// counterpart of torch.distributed.tensor.parallel.parallelize_module.
//
// Example (the PyTorch snippet
//   parallelize_module(model, mesh, {"h.*.mlp.c_fc": ColwiseParallel(),
//                                    "h.*.mlp.c_proj": RowwiseParallel()}) ):
///   namespace tp = paratorch::tensor_parallel;
///   auto model = std::make_shared<Gpt>();          // the user's model, full weights
///   tp::parallelize(model, world.comm(), {{"h.*.attn.c_attn", tp::ParallelStyle::colwise(/*fused_parts=*/3)},
///                                         {"h.*.attn.c_proj", tp::ParallelStyle::rowwise()},
///                                         {"h.*.mlp.c_fc", tp::ParallelStyle::colwise()},
///                                         {"h.*.mlp.c_proj", tp::ParallelStyle::rowwise()},
///                                         {"wte", tp::ParallelStyle::vocab()}});
///   ... train as usual; every rank of the group sees the same batch ...
///   auto full = tp::full_parameters(*model, world.comm());  // whole tensors by the original names
//
// libtorch has no forward hooks, so the swap happens where forward looks the
// child up: children of a torch::nn::Sequential, ModuleList or ModuleDict are
// swapped in the container too and need no change. A custom module calls a
// swappable child through forward_child(*this, "c_fc", x) instead of a member
// holder (a member would keep calling the unsplit layer; parallelize refuses
// a child that something outside its parent still holds). Attention code
// must derive its local head count from the tensor (q.size(-1) / head_dim):
// a column-parallel qkv yields n_heads / tp heads per rank.
#pragma once
#include <paratorch/communicator.h>
#include <paratorch/tensor_parallel_layers.h>

#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace paratorch::tensor_parallel {

/// How parallelize() splits one matched child.
struct ParallelStyle {
  enum class Kind {
    kColwise,  ///< torch::nn::Linear -> ColumnParallelLinear (weight split by output features)
    kRowwise,  ///< torch::nn::Linear -> RowParallelLinear (weight split by input features)
    kVocab,    ///< torch::nn::Embedding -> VocabParallelEmbedding (rows split by id range)
  };
  Kind kind = Kind::kColwise;
  /// colwise: the output features are this many fused blocks (qkv = 3).
  int fused_parts = 1;
  /// colwise: all-gather the output (every rank then holds all features).
  bool gather_output = false;
  /// rowwise: the input is already split (it comes from a colwise child).
  bool input_is_parallel = true;

  static ParallelStyle colwise(int fused_parts = 1, bool gather_output = false) {
    return {Kind::kColwise, fused_parts, gather_output, true};
  }
  static ParallelStyle rowwise(bool input_is_parallel = true) { return {Kind::kRowwise, 1, false, input_is_parallel}; }
  static ParallelStyle vocab() { return {Kind::kVocab, 1, false, true}; }

  /// UsageError naming the field: fused_parts below 1, or a colwise-only
  /// field (fused_parts > 1, gather_output) set on another kind.
  /// parallelize() checks every style of its plan before it replaces anything.
  void validate() const;
};

/// Child-name patterns and their styles. A pattern is a dotted child name
/// ("h.0.mlp.c_fc") in which `*` matches any one name component
/// ("h.*.mlp.c_fc"). Every pattern must match at least one child, and no
/// child may match two patterns.
using TensorParallelPlan = std::vector<std::pair<std::string, ParallelStyle>>;

/// Replaces every child of `module` that `plan` matches with its
/// tensor-parallel layer over `tp_group`, holding this rank's slice of the
/// child's current weights (same dtype and device). Collective-free: every
/// rank must hold the same full weights beforehand (seed them alike).
/// Returns the full names of the replaced children, in module order.
/// UsageError (before anything is replaced) when tp_group is null, a
/// pattern is empty or matches no child (the message lists nearby names),
/// a child matches two patterns, a matched child is not a torch::nn::Linear
/// (colwise, rowwise) / torch::nn::Embedding (vocab) or is still held
/// outside its parent, or the group size does not divide the size to split.
std::vector<std::string> parallelize(const std::shared_ptr<torch::nn::Module>& module,
                                     std::shared_ptr<Communicator> tp_group, const TensorParallelPlan& plan);

/// How every parameter of `module` is split, by full name ("h.0.mlp.c_fc.weight").
/// Parameters of the tp layers report their split; all others are replicated (dim = -1).
std::map<std::string, ShardSpec> shard_specs(const torch::nn::Module& module);

/// Every parameter of `module` as its whole tensor (CPU, detached) under its
/// full name — the unsplit model's names and shapes, for checkpoints and
/// check_equivalence. Collective over `tp_group`: every rank calls it.
std::map<std::string, torch::Tensor> full_parameters(const torch::nn::Module& module, Communicator& tp_group);

/// The same for shards already collected by name, e.g. a pipeline stage's
/// or a whole pipelined model's (Pipeline::full_parameters() returns this tp
/// rank's shard of every parameter): `specs` is shard_specs() of the
/// parallelized module. Collective over `tp_group`. UsageError naming the
/// parameter when `specs` has no entry for a name of `shards`.
///   auto full = tp::full_parameters(pipe.full_parameters(), tp::shard_specs(*net), *groups.tp());
std::map<std::string, torch::Tensor> full_parameters(const std::map<std::string, torch::Tensor>& shards,
                                                     const std::map<std::string, ShardSpec>& specs,
                                                     Communicator& tp_group);

/// Loads whole tensors by full name (as full_parameters() returns them) into
/// `module`, each parameter taking this rank's slice. UsageError naming the
/// parameter when one is missing from `full` or has another shape.
void load_full_parameters(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& full);

/// forward(x) of the child registered under `name` in `parent`, whatever
/// parallelize() put there: torch::nn::Linear, Embedding, Sequential or a
/// tensor-parallel layer. UsageError when there is no such child or it is
/// of another type.
torch::Tensor forward_child(torch::nn::Module& parent, const std::string& name, const torch::Tensor& x);

}  // namespace paratorch::tensor_parallel
