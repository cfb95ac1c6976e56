// src/parallel/ddp/data_parallel_engine.h — Engine for dp replicas of the whole model.
//
// Every rank holds the whole model under DistributedDataParallel. Rank r of
// the dp group computes samples [r*B/dp, (r+1)*B/dp) of each global batch B,
// split into `microbatches` pieces whose gradients accumulate under
// no_sync(); the last piece's backward launches the bucketed all-reduce.
// Each piece's mean loss is scaled by 1/microbatches, and DDP averages over
// replicas, so gradients are those of the global-batch mean loss.
#pragma once
#include "parallel/engine.h"
#include <paratorch/ddp.h>
#include <paratorch/layout.h>
#include <paratorch/sampler.h>

#include <memory>

namespace paratorch::train {

struct DataParallelEngineOptions {
  int64_t global_batch = 32;
  int microbatches = 1;
  double bucket_mb = 25.0;
  uint64_t seed = 1234;
  void validate(int dp) const;
};

class DataParallelEngine : public Engine {
 public:
  DataParallelEngine(const ProcessGroups& groups, std::shared_ptr<models::BundledModel> model, torch::Device device,
                     DataParallelEngineOptions options);

  NamedTensors named_parameters() override;
  BatchShare batch_share() const override;
  double forward_backward(const std::vector<models::Batch>& microbatches) override;
  EvalResult evaluate(const models::Batch& batch) override;
  SumAcross grad_norm_across() override { return nullptr; }  // replicas hold whole gradients
  std::map<std::string, torch::Tensor> full_parameters() override;
  void load_full_parameters(const std::map<std::string, torch::Tensor>& tensors) override;
  int64_t parameter_count() override;
  std::string describe() override;
  models::BundledModel& model() { return *model_; }

 private:
  models::Batch to_device(models::Batch b) const;

  const ProcessGroups& groups_;
  std::shared_ptr<models::BundledModel> model_;
  torch::Device device_;
  DataParallelEngineOptions options_;
  std::unique_ptr<DistributedDataParallel> ddp_;
};

}  // namespace paratorch::train
