// src/parallel/ddp/reduce_slots.cpp — see reduce_slots.h.
#include "parallel/ddp/reduce_slots.h"

#include <paratorch/errors.h>

namespace paratorch {

ReduceSlots::ReduceSlots(Communicator& comm, int count, int64_t slot_numel, torch::ScalarType dtype)
    : count_(static_cast<size_t>(std::max(0, count))), slot_numel_(slot_numel) {
  if (count_ > 0) buffer_ = comm.allocate_reduce_buffer(static_cast<int64_t>(count_) * slot_numel_, dtype);
}

torch::Tensor ReduceSlots::place(size_t bucket, const torch::Tensor& flat) const {
  if (flat.numel() > slot_numel_)
    throw RuntimeFailure("paratorch: a bucket of " + std::to_string(flat.numel()) +
                         " elements does not fit a slot of " + std::to_string(slot_numel_));
  auto slot = buffer_.narrow(0, static_cast<int64_t>(bucket % count_) * slot_numel_, flat.numel());
  slot.copy_(flat);
  return slot;
}

}  // namespace paratorch
