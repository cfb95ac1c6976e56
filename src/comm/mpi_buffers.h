// src/comm/mpi_buffers.h — turning torch tensors into MPI buffers.
//
// MPI wants contiguous host memory of a type it knows. A StagedBuffer is that
// view of a tensor: the tensor itself when it already qualifies, otherwise a
// host copy (CUDA tensors go through pinned memory) written back afterwards.
// MPI has no 16-bit float types: fp16/bf16 travel as 16-bit words. Sums of
// them use user-defined MPI operations that add pairs in fp32 and round back,
// as a GPU's 16-bit reduction does, so 16 bits per value cross the wire; max
// and min widen to fp32 first.
#pragma once
#include <mpi.h>
#include <torch/torch.h>

#include <paratorch/communicator.h>

namespace paratorch::comm {

struct StagedBuffer {
  torch::Tensor original;  // what the caller passed
  torch::Tensor host;      // contiguous host tensor handed to MPI
  bool needs_copy_back = false;

  void* data() const { return host.data_ptr(); }
  int count() const;
  MPI_Datatype mpi_type() const;
  /// Writes `host` back into `original` when they differ.
  void copy_back();
};

/// Stages `tensor` for MPI. `for_reduction` with `op` max/min widens 16-bit
/// floats to fp32 (sums keep them 16-bit: mpi_op_of(op, dtype)).
/// `written` says MPI will write into it (so a copy must be written back).
StagedBuffer stage(const torch::Tensor& tensor, bool for_reduction, bool written, ReduceOp op = ReduceOp::kSum);

MPI_Datatype mpi_type_of(torch::ScalarType type);
/// The MPI operation for `op` on buffers of `type` (16-bit float sums get
/// their own operation; see above).
MPI_Op mpi_op_of(ReduceOp op, torch::ScalarType type = torch::kFloat);

/// tensor /= divisor, in place, without starting torch's thread pool on the
/// communication thread (it would oversubscribe the cores).
void divide_in_place(torch::Tensor& tensor, int divisor);

/// Throws RuntimeFailure with the MPI error string when rc != MPI_SUCCESS.
void check_mpi(int rc, const char* what);

}  // namespace paratorch::comm
