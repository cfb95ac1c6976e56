// src/parallel/pipeline/stage_parameters.h — which parameters a pipeline
// rank holds, tied weights across stages, and whole-model views.
//
// Every rank starts from the same full model (layout invariance), records
// each parameter's full shape and owning rank, then keeps its own stages'
// parameters and frees the rest. A tied group (PipelineOptions::tied) names
// one weight used by several stages — the embedding and the output head of a
// language model (Press & Wolf, 2017). Each holder keeps a copy; after the
// backward the copies' gradients are summed over the pp group, as Megatron-LM
// does over its embedding group (Shoeybi et al., 2019), so all copies take
// the same optimizer step and stay equal.
#pragma once
#include "parallel/pipeline/block_model.h"
#include "parallel/pipeline/partition.h"
#include "parallel/pipeline/schedule.h"
#include <paratorch/communicator.h>

#include <map>
#include <string>
#include "parallel/grad_norm.h"

#include <set>
#include <vector>

namespace paratorch::parallel::pipeline {

class StageParameters {
 public:
  /// Records the model's parameters and their owners (the pp rank of the
  /// block that holds each); checks `tied` (UsageError naming
  /// PipelineOptions::tied) and sets every tied copy to its group's first value.
  StageParameters(BlockModel& model, const ::paratorch::pipeline::Partition& partition,
                  const ::paratorch::pipeline::PipelineShape& shape, int rank,
                  const std::vector<std::vector<std::string>>& tied);

  /// Frees the storage of parameters no block of this rank uses and moves
  /// this rank's blocks to `device`.
  void keep_own(BlockModel& model, torch::Device device);

  /// Before a step: tied copies' gradients so far are set aside, so that
  /// only this step's contributions are summed across stages.
  void begin_step();
  /// After the backward: every tied copy gets the group's summed gradient
  /// (plus what it held before). Collective over `pp`.
  void finish_step(Communicator& pp);

  /// This rank's distinct parameter tensors, in model order.
  std::vector<torch::Tensor> local() const;
  std::map<std::string, torch::Tensor> named_local() const;
  /// Every parameter, full, on the CPU, on every rank (collective over `pp`).
  std::map<std::string, torch::Tensor> full(Communicator& pp) const;
  /// This rank's distinct tensors for the global gradient norm (grad_norm.h):
  /// a tied group is counted by the first of its tensors on the rank that
  /// holds the group's first name; every other copy, holding the same
  /// summed gradient after finish_step, is a tied copy.
  std::vector<NormEntry> norm_entries() const;
  /// The names of this rank's parameters that norm_entries() marks as tied
  /// copies (another rank, or another tensor here, counts their gradient).
  std::vector<std::string> tied_copy_names() const;
  /// Parameter elements held by each rank, for describe().
  int64_t local_numel() const;

 private:
  void check_tied(const std::vector<std::vector<std::string>>& tied) const;
  /// This rank's tensors that are tied copies, by identity.
  std::set<const void*> tied_copies() const;
  std::vector<torch::Tensor> distinct_local(const std::vector<std::string>& names) const;

  int rank_;
  std::vector<std::string> order_;                     // every parameter name, model order
  std::map<std::string, torch::Tensor> params_;        // the model's tensors by name
  std::map<std::string, std::vector<int64_t>> shapes_;  // full shapes
  std::map<std::string, int> owner_;                   // pp rank holding each name
  std::vector<int> block_rank_;                        // pp rank running each block
  std::vector<std::vector<std::string>> tied_;
  std::map<const void*, torch::Tensor> set_aside_;     // tied gradients before the step, by tensor
};

}  // namespace paratorch::parallel::pipeline
