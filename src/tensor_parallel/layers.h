// src/tensor_parallel/layers.h — Megatron-LM's tensor-parallel layers
// (Shoeybi et al. 2019, "Megatron-LM", §3): for Y = f(XW),
//   ColumnParallelLinear  W split by output features: each rank computes its
//                         columns of Y with no communication (copy_to_tp on
//                         the input: its gradient is summed over ranks).
//   RowParallelLinear     W split by input features, X already split: the
//                         partial products are summed (reduce_from_tp), and
//                         the bias is added once, after the sum.
//   VocabParallelEmbedding  rows split by vocabulary range; each rank looks up
//                         the ids it owns (others give 0) and the results
//                         are summed over the group.
// The classes are declared in <paratorch/tensor_parallel_layers.h>; this
// header adds what only the library uses.
// Parameters keep torch::nn::Linear / Embedding's names ("weight", "bias"),
// so the model's full names are the unsplit model's. With an inactive
// context (tp = 1) each layer is exactly its plain counterpart.
// Under sequence parallelism (Korthikanti et al. 2022) the column layer
// all-gathers the sequence-sharded input and the row layer reduce-scatters
// its output along the sequence instead of all-reducing it.
#pragma once
#include <paratorch/tensor_parallel_layers.h>

#include <string>

namespace paratorch::tensor_parallel {

/// Throws UsageError when `tp` does not divide `value`:
/// "paratorch: <what> = <value> is not divisible by tp = <tp>; valid tp: 1, 2, ...".
void require_divisible(const std::string& what, int64_t value, int tp);

}  // namespace paratorch::tensor_parallel
