// src/parallel/tensor_parallel/tensor_parallel_engine.h — Engine for dp × tp layouts (pp = 1).
//
// Each rank holds its tp shards of a model built with tensor-parallel layers
// (make_model with the tp group); the tp ranks of one replica compute the
// same samples together, and replicas average gradients through DDP over
// the dp group exactly as DataParallelEngine does (same slicing and
// micro-batching: this engine extends it). What tp adds:
//  - sequence parallelism: whole parameters used on a slice of the sequence
//    (LayerNorms, wpe, row-parallel biases) hold partial gradients, summed
//    over tp after backward (parallel/finalize_grads.h);
//  - clipping: the global norm sums sharded gradients' squares over tp and
//    counts replicated ones once (parallel/grad_norm.h);
//  - full_parameters / load_full_parameters / parameter_count reassemble or
//    slice shards by each parameter's ShardSpec, and so does the optimizer
//    build_optimizer returns for its state, so checkpoints hold whole tensors
//    and resume in any layout.
#pragma once
#include "parallel/ddp/data_parallel_engine.h"

namespace paratorch::train {

class TensorParallelEngine : public DataParallelEngine {
 public:
  /// `model` must have been built with groups.tp() as its tp context.
  TensorParallelEngine(const ProcessGroups& groups, std::shared_ptr<models::BundledModel> model,
                       torch::Device device, DataParallelEngineOptions options, bool sequence_parallel);

  double forward_backward(const std::vector<models::Batch>& microbatches) override;
  SumAcross grad_norm_across() override;
  std::map<std::string, torch::Tensor> full_parameters() override;
  void load_full_parameters(const std::map<std::string, torch::Tensor>& tensors) override;
  int64_t parameter_count() override;
  std::string describe() override;
  std::unique_ptr<Optimizer> build_optimizer(const OptimizerOptions& options) override;

 private:
  const ProcessGroups& groups_;
  std::map<std::string, tensor_parallel::ShardSpec> specs_;
  bool sequence_parallel_;
};

}  // namespace paratorch::train
