// src/comm/symmetric_buffer.h — a buffer that lives in a shared-memory window,
// at the same offsets on every rank of a one-node group, so an all-reduce of
// any slice of it works in place: no copy in, no copy out.
//
// Why: ShmAllReduce copies the caller's tensor into the window and the result
// back out — with the reduction itself, about 4 passes over the data per
// rank. On the 2-core CI machine DDP's 35 MB of gradients cost more in those
// copies than in the arithmetic. When the gradient buckets *are* the window
// (PyTorch's gradient_as_bucket_view, taken one step further, as NCCL's
// registered / symmetric memory), each rank reduces its 1/P slice of a bucket
// straight from every rank's copy and writes the result into every copy:
// 1 read of P slices and P writes of 1/P per element — one pass each way.
//
// Protocol for one all_reduce(slice): barrier (every rank's slice is final),
// reduce this rank's part into all copies, barrier (every part is written
// everywhere). After the second barrier no rank touches another's copy of the
// slice again, so each rank may overwrite its own copy (next backward) at will.
// Every element is reduced by one rank, in rank order: results are bitwise
// identical on every rank and equal to ShmAllReduce's. reduce_scatter is the
// same with each rank writing its part into its own copy only.
#pragma once
#include "comm/shm_window.h"
#include <paratorch/communicator.h>

#include <mpi.h>
#include <torch/torch.h>

#include <memory>

namespace paratorch::comm {

class SymmetricBuffer {
 public:
  /// Collective over `comm`: `numel` zeroed elements of `dtype` (fp32 or
  /// fp64) per rank. nullptr where ShmWindow::create gives none.
  static std::unique_ptr<SymmetricBuffer> create(MPI_Comm comm, int64_t numel, torch::ScalarType dtype);

  /// This rank's copy. Valid while this object lives.
  const torch::Tensor& local() const { return local_; }
  /// True when `t` is a contiguous slice of local().
  bool contains(const torch::Tensor& t) const;
  /// In-place all-reduce of `slice` (contains(slice)); every rank passes the
  /// slice at the same offset. Collective.
  void all_reduce(const torch::Tensor& slice, ReduceOp op);
  /// In-place reduce-scatter of `slice` (contains(slice), numel divisible by
  /// the group size): rank r's copy of chunk r of the slice receives the
  /// reduction of every rank's chunk r; the rest of each copy is untouched.
  /// One read of P chunks and one write of one chunk per rank: what ZeRO's
  /// gradient reduction needs when each rank updates only its own shard.
  /// Collective; the same protocol (two barriers) as all_reduce.
  void reduce_scatter(const torch::Tensor& slice, ReduceOp op);

 private:
  SymmetricBuffer(std::unique_ptr<ShmWindow> window, torch::Tensor local)
      : window_(std::move(window)), local_(std::move(local)) {}
  void reduce_in_place(const torch::Tensor& slice, ReduceOp op, bool to_all);

  std::unique_ptr<ShmWindow> window_;
  torch::Tensor local_;
};

}  // namespace paratorch::comm
