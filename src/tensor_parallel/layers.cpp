// src/tensor_parallel/layers.cpp — see layers.h.
#include "tensor_parallel/layers.h"

#include "models/ops.h"
#include "tensor_parallel/mappings.h"
#include <paratorch/errors.h>

namespace paratorch::tensor_parallel {

void require_divisible(const std::string& what, int64_t value, int tp) {
  if (tp >= 1 && value % tp == 0) return;
  std::string valid;
  for (int t = 1; t <= value && t <= 64; ++t)
    if (value % t == 0) valid += (valid.empty() ? "" : ", ") + std::to_string(t);
  throw UsageError("paratorch: " + what + " = " + std::to_string(value) + " is not divisible by tp = " +
                   std::to_string(tp) + "; valid tp for it: " + valid);
}

ColumnParallelLinearImpl::ColumnParallelLinearImpl(int64_t in, int64_t out, TensorParallelContext tp,
                                                   bool with_bias, bool gather_output, int parts)
    : tp_(std::move(tp)), gather_output_(gather_output), parts_(parts) {
  TORCH_CHECK(out % (parts * tp_.size()) == 0, "ColumnParallelLinear: ", out, " outputs do not split into ",
              parts, " parts over tp = ", tp_.size());
  weight = register_parameter("weight", torch::empty({out / tp_.size(), in}));
  if (with_bias) bias = register_parameter("bias", torch::empty({out / tp_.size()}));
}

torch::Tensor ColumnParallelLinearImpl::forward(const torch::Tensor& x) {
  auto in = tp_.sp() ? gather_from_sequence(x, tp_) : copy_to_tp(x, tp_);
  auto y = models::ops::linear(in, weight, bias);
  return gather_output_ ? gather_from_tp(y, tp_) : y;
}

ShardSpec ColumnParallelLinearImpl::shard_spec(const std::string&) const {
  return {0, parts_, tp_.rank(), tp_.size(), false};  // weight rows and bias both split
}

RowParallelLinearImpl::RowParallelLinearImpl(int64_t in, int64_t out, TensorParallelContext tp, bool with_bias,
                                             bool input_is_parallel)
    : tp_(std::move(tp)), input_is_parallel_(input_is_parallel) {
  TORCH_CHECK(in % tp_.size() == 0, "RowParallelLinear: ", in, " inputs do not split over tp = ", tp_.size());
  weight = register_parameter("weight", torch::empty({out, in / tp_.size()}));
  if (with_bias) bias = register_parameter("bias", torch::empty({out}));
}

torch::Tensor RowParallelLinearImpl::forward(const torch::Tensor& x) {
  auto in = input_is_parallel_ ? x : scatter_to_tp(x, tp_);
  auto partial = models::ops::linear(in, weight);
  auto y = tp_.sp() ? reduce_scatter_to_sequence(partial, tp_) : reduce_from_tp(partial, tp_);
  return bias.defined() ? y + bias : y;  // once, after the sum
}

ShardSpec RowParallelLinearImpl::shard_spec(const std::string& local_name) const {
  if (local_name == "weight") return {1, 1, tp_.rank(), tp_.size(), false};
  // The bias is whole; under SP each rank adds it to its slice of the
  // sequence, so its gradient is a partial sum over the group.
  return {-1, 1, tp_.rank(), tp_.size(), tp_.sp()};
}

VocabParallelEmbeddingImpl::VocabParallelEmbeddingImpl(int64_t num, int64_t dim, TensorParallelContext tp)
    : tp_(std::move(tp)) {
  TORCH_CHECK(num % tp_.size() == 0, "VocabParallelEmbedding: ", num, " rows do not split over tp = ", tp_.size());
  first_ = tp_.rank() * (num / tp_.size());
  weight = register_parameter("weight", torch::empty({num / tp_.size(), dim}));
}

torch::Tensor VocabParallelEmbeddingImpl::forward_partial(const torch::Tensor& ids) {
  if (!tp_.active()) return torch::embedding(weight, ids);
  const int64_t rows = weight.size(0);
  auto outside = (ids < first_).logical_or(ids >= first_ + rows);
  auto local = (ids - first_).masked_fill(outside, 0);
  return torch::embedding(weight, local).masked_fill(outside.unsqueeze(-1), 0.0);
}

torch::Tensor VocabParallelEmbeddingImpl::forward(const torch::Tensor& ids) {
  return reduce_from_tp(forward_partial(ids), tp_);
}

ShardSpec VocabParallelEmbeddingImpl::shard_spec(const std::string&) const {
  return {0, 1, tp_.rank(), tp_.size(), false};
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Megatron's _VocabParallelCrossEntropy: loss_i = log(sum_v exp(z_iv - m_i))
// - (z_i,t_i - m_i), with m_i the global row max; gradient softmax - onehot.
struct VocabParallelCrossEntropy : torch::autograd::Function<VocabParallelCrossEntropy> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& logits, const torch::Tensor& target,
                               Communicator* comm) {
    const int64_t rows = logits.size(-1), first = comm->rank() * rows;
    auto max = std::get<0>(logits.max(-1));
    timed_all_reduce(max, *comm, ReduceOp::kMax);
    auto shifted = logits - max.unsqueeze(-1);
    auto outside = (target < first).logical_or(target >= first + rows);
    auto local = (target - first).masked_fill(outside, 0);
    auto exp = shifted.exp();
    // One all-reduce carries both sums: [target logit | sum of exponentials].
    auto sums = torch::stack({shifted.gather(-1, local.unsqueeze(-1)).squeeze(-1).masked_fill(outside, 0.0),
                              exp.sum(-1)});
    timed_all_reduce(sums, *comm, ReduceOp::kSum);
    auto softmax = exp / sums[1].unsqueeze(-1);
    ctx->save_for_backward({softmax, local, outside});
    return sums[1].log() - sums[0];
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) {
    auto saved = ctx->get_saved_variables();
    auto grad = saved[0].clone();
    auto hit = (~saved[2]).to(grad.scalar_type()).unsqueeze(-1);
    grad.scatter_add_(-1, saved[1].unsqueeze(-1), -hit);
    return {grad * g[0].unsqueeze(-1), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor vocab_parallel_cross_entropy(const torch::Tensor& logits, const torch::Tensor& target,
                                           const TensorParallelContext& tp) {
  if (!tp.active())
    return torch::nn::functional::cross_entropy(
        logits, target, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
  return VocabParallelCrossEntropy::apply(logits, target, tp.comm.get());
}

}  // namespace paratorch::tensor_parallel
