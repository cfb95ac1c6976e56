// src/comm/mpi_buffers.h — turning torch tensors into MPI buffers.
//
// MPI wants contiguous host memory of a type it knows. A StagedBuffer is that
// view of a tensor: the tensor itself when it already qualifies, otherwise a
// host copy (CUDA tensors go through pinned memory; fp16/bf16 are widened to
// fp32 for reductions, which MPI cannot do on them) written back afterwards.
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

/// Stages `tensor` for MPI. `for_reduction` widens 16-bit floats to fp32.
/// `written` says MPI will write into it (so a copy must be written back).
StagedBuffer stage(const torch::Tensor& tensor, bool for_reduction, bool written);

MPI_Datatype mpi_type_of(torch::ScalarType type);
MPI_Op mpi_op_of(ReduceOp op);

/// tensor /= divisor, in place, without starting torch's thread pool on the
/// communication thread (it would oversubscribe the cores).
void divide_in_place(torch::Tensor& tensor, int divisor);

/// Throws RuntimeFailure with the MPI error string when rc != MPI_SUCCESS.
void check_mpi(int rc, const char* what);

}  // namespace paratorch::comm
