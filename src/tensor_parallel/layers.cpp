// src/tensor_parallel/layers.cpp — the tp layers, their options' checks and the
// vocabulary-parallel cross-entropy (declared in <paratorch/tensor_parallel_layers.h>).
#include "tensor_parallel/layers.h"

#include "ops/ops.h"
#include "tensor_parallel/mappings.h"
#include <paratorch/errors.h>

#include <cmath>
#include <utility>

namespace paratorch::tensor_parallel {

void require_divisible(const std::string& what, int64_t value, int tp) {
  if (tp >= 1 && value % tp == 0) return;
  std::string valid;
  for (int t = 1; t <= value && t <= 64; ++t)
    if (value % t == 0) valid += (valid.empty() ? "" : ", ") + std::to_string(t);
  throw UsageError("paratorch: " + what + " = " + std::to_string(value) + " is not divisible by tp = " +
                   std::to_string(tp) + "; valid tp for it: " + valid);
}

namespace {

// torch::nn::Linear's initialization of the whole [out, in] layer (its
// reset_parameters): Kaiming-uniform with a = √5, which is U(±1/√in), then
// the bias from U(±1/√in), in that order from the default generator.
std::pair<torch::Tensor, torch::Tensor> whole_linear_init(int64_t in, int64_t out, bool with_bias) {
  torch::NoGradGuard no_grad;
  auto w = torch::empty({out, in});
  torch::nn::init::kaiming_uniform_(w, std::sqrt(5.0));
  torch::Tensor b;
  if (with_bias) {
    const double bound = in > 0 ? 1.0 / std::sqrt(static_cast<double>(in)) : 0.0;
    b = torch::empty({out}).uniform_(-bound, bound);
  }
  return {w, b};
}

void load_slice(torch::Tensor& param, const ShardSpec& spec, const torch::Tensor& whole) {
  torch::NoGradGuard no_grad;
  param.copy_(spec.slice(whole));
}

}  // namespace

void ColumnParallelLinearOptions::validate(int tp_size) const {
  if (fused_parts_ < 1 || out_features_ % fused_parts_ != 0)
    throw UsageError("paratorch: ColumnParallelLinearOptions::fused_parts = " + std::to_string(fused_parts_) +
                     " must be >= 1 and divide out_features = " + std::to_string(out_features_));
  // Each fused block is split separately, so the block size must divide.
  require_divisible(fused_parts_ == 1 ? "ColumnParallelLinearOptions::out_features"
                                      : "ColumnParallelLinearOptions::out_features / fused_parts",
                    out_features_ / fused_parts_, tp_size);
}

void RowParallelLinearOptions::validate(int tp_size) const {
  require_divisible("RowParallelLinearOptions::in_features", in_features_, tp_size);
}

void VocabParallelEmbeddingOptions::validate(int tp_size) const {
  require_divisible("VocabParallelEmbeddingOptions::num_embeddings", num_embeddings_, tp_size);
}

ColumnParallelLinearImpl::ColumnParallelLinearImpl(const ColumnParallelLinearOptions& options,
                                                   std::shared_ptr<Communicator> tp_group, bool sequence_parallel)
    : options_(options), tp_{std::move(tp_group), sequence_parallel} {
  options_.validate(tp_.size());
  const int64_t out = options_.out_features() / tp_.size();
  weight = register_parameter("weight", torch::empty({out, options_.in_features()}));
  if (options_.bias()) bias = register_parameter("bias", torch::empty({out}));
  reset_parameters();
}

void ColumnParallelLinearImpl::reset_parameters() {
  auto [w, b] = whole_linear_init(options_.in_features(), options_.out_features(), options_.bias());
  load_slice(weight, shard_spec("weight"), w);
  if (bias.defined()) load_slice(bias, shard_spec("bias"), b);
}

ColumnParallelLinearImpl::ColumnParallelLinearImpl(int64_t in, int64_t out, TensorParallelContext tp,
                                                   bool with_bias, bool gather_output, int parts)
    : ColumnParallelLinearImpl(
          ColumnParallelLinearOptions(in, out).bias(with_bias).gather_output(gather_output).fused_parts(parts),
          std::move(tp.comm), tp.sequence_parallel) {}

torch::Tensor ColumnParallelLinearImpl::forward(const torch::Tensor& x) {
  auto in = tp_.sp() ? gather_from_sequence(x, tp_) : copy_to_tp(x, tp_);
  auto y = ops::linear(in, weight, bias);
  return options_.gather_output() ? gather_from_tp(y, tp_) : y;
}

ShardSpec ColumnParallelLinearImpl::shard_spec(const std::string&) const {
  return {0, options_.fused_parts(), tp_.rank(), tp_.size(), false};  // weight rows and bias both split
}

RowParallelLinearImpl::RowParallelLinearImpl(const RowParallelLinearOptions& options,
                                             std::shared_ptr<Communicator> tp_group, bool sequence_parallel)
    : options_(options), tp_{std::move(tp_group), sequence_parallel} {
  options_.validate(tp_.size());
  weight = register_parameter("weight", torch::empty({options_.out_features(), options_.in_features() / tp_.size()}));
  if (options_.bias()) bias = register_parameter("bias", torch::empty({options_.out_features()}));
  reset_parameters();
}

void RowParallelLinearImpl::reset_parameters() {
  auto [w, b] = whole_linear_init(options_.in_features(), options_.out_features(), options_.bias());
  load_slice(weight, shard_spec("weight"), w);
  if (bias.defined()) load_slice(bias, shard_spec("bias"), b);
}

RowParallelLinearImpl::RowParallelLinearImpl(int64_t in, int64_t out, TensorParallelContext tp, bool with_bias,
                                             bool input_is_parallel)
    : RowParallelLinearImpl(RowParallelLinearOptions(in, out).bias(with_bias).input_is_parallel(input_is_parallel),
                            std::move(tp.comm), tp.sequence_parallel) {}

torch::Tensor RowParallelLinearImpl::forward(const torch::Tensor& x) {
  auto in = options_.input_is_parallel() ? x : scatter_to_tp(x, tp_);
  auto partial = ops::linear(in, weight);
  auto y = tp_.sp() ? reduce_scatter_to_sequence(partial, tp_) : reduce_from_tp(partial, tp_);
  return bias.defined() ? y + bias : y;  // once, after the sum
}

ShardSpec RowParallelLinearImpl::shard_spec(const std::string& local_name) const {
  if (local_name == "weight") return {1, 1, tp_.rank(), tp_.size(), false};
  // The bias is whole; under SP each rank adds it to its slice of the
  // sequence, so its gradient is a partial sum over the group.
  return {-1, 1, tp_.rank(), tp_.size(), tp_.sp()};
}

VocabParallelEmbeddingImpl::VocabParallelEmbeddingImpl(const VocabParallelEmbeddingOptions& options,
                                                       std::shared_ptr<Communicator> tp_group)
    : options_(options), tp_{std::move(tp_group), false} {
  options_.validate(tp_.size());
  const int64_t rows = options_.num_embeddings() / tp_.size();
  first_ = tp_.rank() * rows;
  weight = register_parameter("weight", torch::empty({rows, options_.embedding_dim()}));
  reset_parameters();
}

void VocabParallelEmbeddingImpl::reset_parameters() {
  // torch::nn::Embedding's initialization of the whole table: N(0, 1).
  torch::Tensor whole;
  {
    torch::NoGradGuard no_grad;
    whole = torch::empty({options_.num_embeddings(), options_.embedding_dim()}).normal_();
  }
  load_slice(weight, shard_spec("weight"), whole);
}

VocabParallelEmbeddingImpl::VocabParallelEmbeddingImpl(int64_t num, int64_t dim, TensorParallelContext tp)
    : VocabParallelEmbeddingImpl(VocabParallelEmbeddingOptions(num, dim), std::move(tp.comm)) {}

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
