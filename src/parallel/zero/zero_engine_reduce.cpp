// src/parallel/zero/zero_engine_reduce.cpp — ZeroEngine's gradient path (see
// zero_engine.h): DDP's gradient reducer (parallel/ddp/reducer.h) over the
// units, one bucket per unit, for stages 1-2, and the comm hook every
// stage's dp reduction goes through (stage 3's per-block reduce-scatter in
// zero_engine_stage3.cpp included).
//   stage 2  reduce-scatter mode with pooled buckets: each micro-batch's
//            averaged shard is added into u->grad (on_shard). On the CPU
//            each bucket is reduced in one of kReduceSlots slots of the
//            communicator's reduce buffer (ddp/reduce_slots.h).
//   stage 1  reduce-scatter mode over the units' kept fp32 buffers
//            (u->full_grad, a slice of the communicator's reduce buffer):
//            micro-batches accumulate in them (no_sync until the last), and
//            the last one's backward reduces each rank's shard in place, so
//            u->grad, a view of that slice, holds the average.
// fp32 models' .grad alias the buffers, so autograd accumulates in place;
// bf16/fp16 gradients are widened into them as each becomes final.
#include "parallel/zero/zero_engine.h"

#include "parallel/zero/zero_unit.h"

namespace paratorch::zero {

void ZeroEngine::install_reducer() {
  ReduceScatterOptions scatter;
  for (const auto& u : units_) scatter.buckets.push_back(BucketLayout{u->members, u->layout->numel(), dtype_});
  scatter.buffer_dtype = torch::kFloat;
  if (options_.stage < 2) {
    for (const auto& u : units_) scatter.buffers.push_back(u->full_grad);
  } else {
    // The units are the reducer's buckets, so its shards are the masters' slices.
    scatter.on_shard = [this](size_t u, const torch::Tensor& shard) {
      torch::NoGradGuard no_grad;
      units_[u]->grad.add_(shard);
    };
    scatter.reduce_slots = kReduceSlots * device_.is_cpu();
  }
  reducer_ = std::make_shared<Reducer>(params_, names_, groups_.dp(), std::move(scatter));
  reducer_->set_comm_hook(gradient_hook());
  reducer_->install_hooks();
}

// [train] reduce_precision (reducer.h's reduce_in_dtype).
CommHook ZeroEngine::gradient_hook() const { return reduce_in_dtype(reduce_dtype_, *groups_.dp()); }

}  // namespace paratorch::zero
