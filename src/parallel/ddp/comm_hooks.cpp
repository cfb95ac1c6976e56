// src/parallel/ddp/comm_hooks.cpp — DDP's built-in communication hooks and
// then(), the continuation a hook uses to finish its bucket after the
// collective (PyTorch's register_comm_hook, default_hooks.py semantics).
#include <paratorch/ddp.h>

#include "parallel/ddp/reducer.h"

#include <mutex>

namespace paratorch {
namespace {

class ThenWork final : public Work {
 public:
  ThenWork(WorkHandle inner, std::function<void()> after) : inner_(std::move(inner)), after_(std::move(after)) {}
  void wait() override {
    inner_->wait();
    std::call_once(done_, [this] { after_(); });
  }
  bool is_completed() override { return inner_->is_completed(); }

 private:
  WorkHandle inner_;
  std::function<void()> after_;
  std::once_flag done_;
};

/// Sums `wire` over the group: all of it, or (when the bucket has a shard)
/// this rank's slice into `wire_out`, a tensor shaped like that slice.
WorkHandle sum_over_group(Communicator& comm, const GradBucket& bucket, torch::Tensor wire, torch::Tensor wire_out) {
  if (bucket.shard.defined()) return comm.reduce_scatter_async(wire_out, wire, ReduceOp::kSum);
  return comm.all_reduce_async(wire, ReduceOp::kSum);
}

/// Sum-reduces a 16-bit copy of the bucket, pre-divided, and writes the
/// average into bucket.buffer (or bucket.shard).
CommHook compress(torch::ScalarType wire_dtype) {
  return [wire_dtype](Communicator& comm, GradBucket& bucket) -> WorkHandle {
    torch::NoGradGuard no_grad;
    // Divide first, as PyTorch's fp16_compress_hook does: the sum of
    // averages stays in range where a sum of 16-bit gradients could overflow.
    torch::Tensor wire = bucket.buffer.div(bucket.divisor).to(wire_dtype);
    torch::Tensor out = bucket.shard.defined() ? bucket.shard : bucket.buffer;
    torch::Tensor wire_out = bucket.shard.defined() ? torch::empty({out.numel()}, wire.options()) : wire;
    return then(sum_over_group(comm, bucket, wire, wire_out), [wire_out, out]() mutable {
      torch::NoGradGuard guard;
      out.copy_(wire_out);
    });
  };
}

}  // namespace

WorkHandle then(WorkHandle work, std::function<void()> after) {
  return std::make_shared<ThenWork>(std::move(work), std::move(after));
}

WorkHandle completed_work() {
  class Done final : public Work {
   public:
    void wait() override {}
    bool is_completed() override { return true; }
  };
  return std::make_shared<Done>();
}

namespace comm_hooks {

CommHook allreduce() {
  return [](Communicator& comm, GradBucket& bucket) -> WorkHandle {
    const bool scatter = bucket.shard.defined();
    if (bucket.divisor == comm.size())
      return scatter ? comm.reduce_scatter_async(bucket.shard, bucket.buffer, ReduceOp::kAvg)
                     : comm.all_reduce_async(bucket.buffer, ReduceOp::kAvg);
    // Some ranks joined: they add zeros, and the average is over the others.
    torch::Tensor out = scatter ? bucket.shard : bucket.buffer;
    const int divisor = bucket.divisor;
    return then(sum_over_group(comm, bucket, bucket.buffer, out), [out, divisor]() mutable {
      torch::NoGradGuard no_grad;
      out.div_(divisor);
    });
  };
}

CommHook bf16_compress() { return compress(torch::kBFloat16); }
CommHook fp16_compress() { return compress(torch::kHalf); }

}  // namespace comm_hooks

CommHook reduce_in_dtype(torch::ScalarType dtype, const Communicator& group) {
  if (group.size() > 1 && dtype == torch::kBFloat16) return comm_hooks::bf16_compress();
  if (group.size() > 1 && dtype == torch::kHalf) return comm_hooks::fp16_compress();
  return comm_hooks::allreduce();
}
}  // namespace paratorch
