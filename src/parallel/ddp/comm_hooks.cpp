// src/parallel/ddp/comm_hooks.cpp — DDP's built-in communication hooks and
// then(), the continuation a hook uses to finish its bucket after the
// collective (PyTorch's register_comm_hook, default_hooks.py semantics).
#include <paratorch/ddp.h>

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

/// Sum-reduces `wire` (the bucket, or a 16-bit copy of it pre-divided) and
/// writes the average into bucket.buffer.
CommHook compress(torch::ScalarType wire_dtype) {
  return [wire_dtype](Communicator& comm, GradBucket& bucket) -> WorkHandle {
    torch::NoGradGuard no_grad;
    // Divide first, as PyTorch's fp16_compress_hook does: the sum of
    // averages stays in range where a sum of 16-bit gradients could overflow.
    torch::Tensor wire = bucket.buffer.div(bucket.divisor).to(wire_dtype);
    torch::Tensor buffer = bucket.buffer;
    return then(comm.all_reduce_async(wire, ReduceOp::kSum), [wire, buffer]() mutable {
      torch::NoGradGuard guard;
      buffer.copy_(wire);
    });
  };
}

}  // namespace

WorkHandle then(WorkHandle work, std::function<void()> after) {
  return std::make_shared<ThenWork>(std::move(work), std::move(after));
}

namespace comm_hooks {

CommHook allreduce() {
  return [](Communicator& comm, GradBucket& bucket) -> WorkHandle {
    if (bucket.divisor == comm.size()) return comm.all_reduce_async(bucket.buffer, ReduceOp::kAvg);
    // Some ranks joined: they add zeros, and the average is over the others.
    torch::Tensor buffer = bucket.buffer;
    const int divisor = bucket.divisor;
    return then(comm.all_reduce_async(buffer, ReduceOp::kSum), [buffer, divisor]() mutable {
      torch::NoGradGuard no_grad;
      buffer.div_(divisor);
    });
  };
}

CommHook bf16_compress() { return compress(torch::kBFloat16); }
CommHook fp16_compress() { return compress(torch::kHalf); }

}  // namespace comm_hooks
}  // namespace paratorch
