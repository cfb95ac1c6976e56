// src/parallel/zero/zero_redundancy_impl.h — ZeroRedundancyOptimizer's state
// (internal to src/parallel/zero/zero_*.cpp).
//
// One FlatBuffer per DDP-style bucket (plan_buckets: reverse registration
// order, bucket_mb each). Which tensors exist:
//   flat       the whole buffer in MixedPrecisionPolicy::param_dtype; the
//              module's parameters are views into it, and the all-gather
//              after each step writes it.
//   shard      this rank's fp32 master shard (parallel/zero/flat_buffer.h's
//              arithmetic); the user's optimizer steps it; shard.grad is the
//              averaged gradient shard.
//   full_grad  stage 1: the whole gradient, kept (the module's .grad
//              aliases it when the dtypes match): with more than one rank
//              fp32, all-reduced in place by DDP's gradient reducer during
//              backward; under DDP, in reduce_dtype, copied in by step().
//              Stage 2 has none: DDP's gradient reducer in its
//              reduce-scatter mode (parallel/ddp/reducer.h) collects each
//              buffer's gradients for one backward and hands over the
//              averaged shard, which is added into shard.grad.
#pragma once
#include <paratorch/zero.h>

#include "parallel/ddp/reducer.h"
#include "parallel/zero/flat_buffer.h"

namespace paratorch {

struct ZeroRedundancyOptimizer::Impl {
  struct FlatBuffer {
    std::vector<size_t> members;  // indices into params, buffer order
    std::unique_ptr<zero::FlatLayout> layout;
    torch::Tensor flat, shard, full_grad;
    std::vector<torch::Tensor> grad_views;  // stage 1, matching dtypes: the module's .grad
  };

  std::shared_ptr<torch::nn::Module> module;  // null when built over named parameters
  std::shared_ptr<Communicator> group;
  ZeroRedundancyOptimizerOptions options;
  std::vector<torch::Tensor> params;  // trainable, registration order
  std::vector<std::string> names;
  std::vector<std::pair<size_t, size_t>> slot;  // param -> (buffer, member)
  std::vector<FlatBuffer> buffers;
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  std::vector<std::string> kinds;  // the optimizer's state tensors
  int64_t steps = 0;
  double last_grad_norm = -1;  // before clipping, options.max_grad_norm > 0

  // the gradient path of stage 2, and of stage 1 when it reduces over more
  // than one rank (zero_gradient_path.cpp); declared last, so it
  // goes first, before the buffers its hand-over writes
  std::shared_ptr<Reducer> reducer;

  void init(std::shared_ptr<Communicator> dp_group, const OptimizerFactory& factory,
            const ZeroRedundancyOptimizerOptions& opts, const std::string& source);
  void build_buffers(const OptimizerFactory& factory);
  void install_reducer();
  void add_reduced_shard(size_t buffer, const torch::Tensor& shard);
  void reduce_stage1();
  void copy_stage1_gradients();
  /// options.max_grad_norm > 0: the shards' gradients clipped by the whole
  /// model's norm (zero_gradient_path.cpp); sets last_grad_norm.
  void clip_gradients();
  void all_gather_parameters();
};

}  // namespace paratorch
