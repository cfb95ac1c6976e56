// src/parallel/zero/gathered_flat.h — one fully sharded flat buffer at run
// time (ZeRO stage 3, Rajbhandari et al. 2019, §5.3): the mechanics of
// stage 3's driver (fsdp_state.h), which runs fully_shard's units and
// ZeroEngine's blocks alike.
//
// Between uses a rank holds only its shard of the unit's padded flat buffer
// (flat_buffer.h). gather() all-gathers the whole buffer, in the compute
// dtype, into pool memory (asynchronously, so the next unit's gather
// overlaps this one's compute) and points the unit's parameters at views of
// it; release() empties them and gives the memory back. Its gradient leaves
// as a ShardReduction: the full fp32 gradient reduce-scattered through the
// comm hook (the data-parallel seam: DDP's buckets, stages 1-2, and here),
// and this rank's averaged slice added into the shard's gradient.
#pragma once
#include <paratorch/ddp.h>

#include "parallel/ddp/buffer_pool.h"
#include "parallel/zero/flat_buffer.h"

namespace paratorch::zero {

class GatheredFlat {
 public:
  GatheredFlat() = default;
  /// `params`: handles of the unit's parameters in `layout` order (set_data
  /// on them moves the module's own tensors).
  GatheredFlat(const FlatLayout* layout, std::vector<torch::Tensor> params)
      : layout_(layout), params_(std::move(params)) {}

  /// Starts gathering `src` (this rank's shard in the compute dtype) over
  /// `group`, unless gathered or under way. `src_from_pool`: `src` was taken
  /// from `pool` and goes back once sent.
  void start(Communicator& group, torch::Tensor src, bool src_from_pool, BufferPool& pool);
  /// Waits for the gather started and points the parameters at it.
  void finish(BufferPool& pool);
  /// Empties the parameters and gives the gathered buffer back.
  void release(BufferPool& pool);

  bool gathered() const { return gathered_; }
  /// Gathered, or a gather under way.
  bool started() const { return gathered_ || flat_.defined(); }
  const std::vector<torch::Tensor>& params() const { return params_; }
  const FlatLayout& layout() const { return *layout_; }

 private:
  const FlatLayout* layout_ = nullptr;
  std::vector<torch::Tensor> params_;
  torch::Tensor flat_, src_;
  bool src_from_pool_ = false;
  WorkHandle work_;
  bool gathered_ = false;
};

/// A unit's gradient on its way to this rank's shard.
struct ShardReduction {
  size_t unit = 0;
  torch::Tensor full, reduced;  // the whole fp32 gradient (from the pool); this rank's averaged slice
  WorkHandle work;

  /// Reduce-scatters `full` (padded, fp32, taken from `pool`) over `group`
  /// through `hook`.
  static ShardReduction start(size_t unit, torch::Tensor full, const FlatLayout& layout, Communicator& group,
                              const CommHook& hook, BufferPool& pool);
  /// Waits, adds the slice into `grad` (or makes it `*grad` when undefined)
  /// and gives `full` back to the pool; `reduced` is freed (not pooled), so
  /// memory trimmed after it goes back to the OS.
  void finish(torch::Tensor* grad, BufferPool& pool);
};

}  // namespace paratorch::zero
