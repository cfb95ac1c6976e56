// src/parallel/zero/zero_redundancy_impl.h — ZeroRedundancyOptimizer's state
// (internal to src/parallel/zero/zero_*.cpp).
//
// One FlatBuffer per DDP-style bucket (plan_buckets: reverse registration
// order, bucket_mb each). Which tensors exist:
//   flat       the whole buffer in MixedPrecisionPolicy::param_dtype; the
//              module's parameters are views into it, and the all-gather
//              after each step writes it.
//   shard      this rank's fp32 master shard (zero/flat_buffer.h's
//              arithmetic); the user's optimizer steps it; shard.grad is the
//              averaged gradient shard.
//   full_grad  the whole gradient in reduce_dtype: stage 1 keeps it (the
//              module's .grad aliases it when the dtypes match) and
//              all-reduces it; stage 2 takes it from a pool for one backward
//              and gives it back once reduce-scattered.
#pragma once
#include <paratorch/zero.h>

#include "zero/buffer_pool.h"
#include "zero/flat_buffer.h"

#include <mutex>

namespace paratorch {

struct ZeroRedundancyOptimizer::Impl {
  struct FlatBuffer {
    std::vector<size_t> members;  // indices into params, buffer order
    std::unique_ptr<zero::FlatLayout> layout;
    torch::Tensor flat, shard, full_grad, reduced;
    std::vector<torch::Tensor> grad_views;  // stage 1, matching dtypes: the module's .grad
    WorkHandle work;
    size_t pending = 0;  // stage 2: members whose gradient of this backward is not in yet
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

  // stage 2 gradient path (zero_gradient_path.cpp)
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators;
  zero::BufferPool pool;
  std::mutex mutex;
  bool in_backward = false;
  size_t next_launch = 0;

  void init(std::shared_ptr<Communicator> dp_group, const OptimizerFactory& factory,
            const ZeroRedundancyOptimizerOptions& opts, const std::string& source);
  void build_buffers(const OptimizerFactory& factory);
  void install_hooks();
  void on_gradient_ready(size_t param);
  void move_gradient_into_buffer(size_t param);
  void launch_in_order(bool force);
  void end_backward();
  void reduce_stage1();
  void all_gather_parameters();
};

}  // namespace paratorch
