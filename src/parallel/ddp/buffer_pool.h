// src/parallel/ddp/buffer_pool.h — reusable flat buffers for ZeRO-3's transient tensors.
//
// Stage 3 allocates and frees a whole unit's worth of memory per block and
// step: the gathered parameters, the full gradient before its
// reduce-scatter, the shard copy the gather sends. Allocating them fresh
// each time leaves the C allocator holding freed blocks it does not return
// to the OS (World turns glibc's mmap and trimming off; measured here: the
// resident set grew to 2.8× live memory), so a rank's resident memory
// would track the allocation history rather than what is live. A pool keeps
// released buffers and hands them out again for the same size and dtype, so
// resident memory is the live set plus the few buffers of the widest moment
// (about two blocks), as ZeRO §5.3 budgets ("constant buffer" optimization).
//
// Example:
//   BufferPool pool;
//   auto buf = pool.take(n, torch::kFloat, device);   // uninitialized
//   ...
//   pool.give(std::move(buf));                         // reusable from now on
#pragma once
#include <torch/torch.h>

#include <vector>

namespace paratorch::zero {

class BufferPool {
 public:
  /// A 1-D buffer of `numel` elements (contents undefined): a free one of
  /// that size, dtype and device if there is one, else a new allocation.
  torch::Tensor take(int64_t numel, torch::ScalarType dtype, torch::Device device);
  /// Returns `buffer` (taken from this pool) for reuse. The caller must not
  /// use it afterwards, nor may any view of it still be in use.
  void give(torch::Tensor buffer);
  /// Bytes of the buffers waiting for reuse.
  int64_t idle_bytes() const;

 private:
  std::vector<torch::Tensor> free_;
};

/// Hands memory the C allocator holds freed back to the OS (glibc:
/// malloc_trim, which also releases whole free pages inside the heap).
/// Every paratorch process keeps freed blocks in the heap: World raises
/// glibc's mmap and trim thresholds to 1 GiB (WorldOptions::tune_malloc; it
/// is that setting, not Open MPI, measured with a plain MPI program: under
/// mpirun glibc still mmaps and unmaps 8 MiB blocks). ZeRO-3 calls this after
/// sharding each unit and, with ZeroEngineOptions::release_freed_memory, at
/// the points of a unit's run where transients pile up (zero_engine_stage3.cpp,
/// FsdpState::after_release). A no-op elsewhere.
void return_free_memory_to_os();

}  // namespace paratorch::zero
