// src/tensor_parallel/mappings.h — autograd-aware communication over the tp
// group: the conjugate pairs of Megatron-LM (Shoeybi et al. 2019, §3; and
// Korthikanti et al. 2022 for the sequence-parallel pair).
//
//   copy_to_tp            identity        | all-reduce      (enter a column-parallel region)
//   reduce_from_tp        all-reduce      | identity        (leave a row-parallel region)
//   scatter_to_tp         split last dim  | all-gather last
//   gather_from_tp        all-gather last | split last dim
//   scatter_to_sequence   split seq dim   | all-gather seq
//   gather_from_sequence  all-gather seq  | reduce-scatter seq  (SP: enter a column-parallel region)
//   reduce_scatter_to_sequence  reduce-scatter seq | all-gather seq (SP: leave a row-parallel region)
//
// (forward | backward). With an inactive context (tp = 1) every function
// returns its input. Time spent in these collectives is traced under the
// category "tp" and summed in tp_comm_seconds() (for bench/tensor_parallel).
#pragma once
#include <paratorch/tensor_parallel_layers.h>

#include <torch/torch.h>

// The mappings themselves (copy_to_tp ... reduce_scatter_to_sequence) are
// declared in <paratorch/tensor_parallel_layers.h>; below is what only the
// library and its benchmarks use.
namespace paratorch::tensor_parallel {

/// Seconds this process spent in tp collectives since start (or the last reset).
double tp_comm_seconds();
void reset_tp_comm_seconds();

// Plain (non-autograd) collectives along a dimension, used by the mappings
// and by engines that reassemble shards.
torch::Tensor all_gather_along(const torch::Tensor& x, Communicator& comm, int64_t dim);
torch::Tensor reduce_scatter_along(const torch::Tensor& x, Communicator& comm, int64_t dim);
torch::Tensor split_along(const torch::Tensor& x, const Communicator& comm, int64_t dim);

}  // namespace paratorch::tensor_parallel

namespace paratorch::tensor_parallel {
/// comm.all_reduce(t, op), traced and timed like the mappings.
void timed_all_reduce(torch::Tensor t, Communicator& comm, ReduceOp op);
}  // namespace paratorch::tensor_parallel
