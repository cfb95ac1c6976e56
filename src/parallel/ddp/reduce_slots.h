// src/parallel/ddp/reduce_slots.h — where the reducer reduce-scatters its
// pooled buckets (ZeRO stage 2): a few slots of one reduce buffer from the
// communicator (Communicator::allocate_reduce_buffer). On one node that
// buffer is shared memory the peers read in place, so a bucket copied into
// a slot is reduced without the staging copies and MPI messages a buffer of
// the heap needs (measured on the 2-core VM, mlp at dp = 2: 5.4 ms against
// 15.5 ms for the same 2.4 MB bucket, docs/zero.md). Bucket b of a pass
// takes slot b % count, the same on every rank (buckets launch in index
// order), once bucket b - count has handed over its shard; so the slots
// cost `count` buckets of memory, as ZeRO's constant-size buffers (§5.3).
//
// Example (inside the reducer, at bucket b's launch):
//   retire through bucket b - slots.count();
//   torch::Tensor in_slot = slots.place(b, bucket.flat);   // copied in
//   reduce-scatter in_slot in place
#pragma once
#include <paratorch/communicator.h>

#include <torch/torch.h>

#include <cstddef>

namespace paratorch {

/// How many slots ZeRO stage 2 reduces its buckets in: two, so one bucket
/// fills while the one before it is reduced.
constexpr int kReduceSlots = 2;

class ReduceSlots {
 public:
  ReduceSlots() = default;
  /// `count` slots of `slot_numel` elements (collective over `comm`; every
  /// rank passes the same values). No slots when count is 0.
  ReduceSlots(Communicator& comm, int count, int64_t slot_numel, torch::ScalarType dtype);
  /// Slots there are (0: reduce the pooled buffers themselves).
  size_t count() const { return count_; }
  /// Bucket b's slot, its first flat.numel() elements a copy of `flat`.
  torch::Tensor place(size_t bucket, const torch::Tensor& flat) const;

 private:
  size_t count_ = 0;
  int64_t slot_numel_ = 0;
  torch::Tensor buffer_;
};

}  // namespace paratorch
