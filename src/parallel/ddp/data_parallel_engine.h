// src/parallel/ddp/data_parallel_engine.h — Engine for dp replicas of a model
// (pp = 1, fp32, no ZeRO), each replica whole or split over tp.
//
// Every rank holds its replica under DistributedDataParallel. Rank r of
// the dp group computes samples [r*B/dp, (r+1)*B/dp) of each global batch B,
// split into `microbatches` pieces whose gradients accumulate under
// no_sync(); the last piece's backward launches the bucketed all-reduce.
// Each piece's mean loss is scaled by 1/microbatches, and DDP averages over
// replicas, so gradients are those of the global-batch mean loss.
//
// Tensor parallelism composes in through parallel::TpShards (the same
// component ZeRO and pipeline engines hold): with a model built with the tp
// group, the tp ranks of one replica compute the same samples on their
// shards; after DDP's average the sequence-parallel partial gradients are
// summed over tp, the norm counts shards and replicated parameters by
// Megatron-LM's rule, and whole tensors are gathered or sliced by ShardSpec
// for checkpoints. At tp = 1 each of those is the identity.
#pragma once
#include "parallel/compression/gradient_compression.h"
#include "parallel/engine.h"
#include "parallel/tensor_parallel/tp_shards.h"
#include <paratorch/ddp.h>
#include <paratorch/layout.h>
#include <paratorch/sampler.h>

#include <memory>

namespace paratorch::parallel {

struct DataParallelEngineOptions {
  int64_t global_batch = 32;
  int microbatches = 1;
  double bucket_mb = 25.0;
  uint64_t seed = 1234;
  /// PowerSGD or 1-bit Adam over the replicas' exchange (tp = 1 only).
  parallel::CompressionOptions compression;
  void validate(int dp) const;
};

class DataParallelEngine : public Engine {
 public:
  DataParallelEngine(const ProcessGroups& groups, std::shared_ptr<models::BundledModel> model, torch::Device device,
                     DataParallelEngineOptions options);

  optim::NamedTensors named_parameters() override;
  BatchShare batch_share() const override;
  double forward_backward(const std::vector<models::Batch>& microbatches) override;
  EvalResult evaluate(const models::Batch& batch) override;
  SumAcross grad_norm_across() override;
  std::map<std::string, torch::Tensor> full_parameters() override;
  void load_full_parameters(const std::map<std::string, torch::Tensor>& tensors) override;
  std::optional<std::vector<formats::Piece>> checkpoint_pieces(const optim::Optimizer& optimizer) override;
  formats::ShardPlan parameters_to_load() override;
  int64_t parameter_count() override;
  std::string describe() override;
  std::unique_ptr<optim::Optimizer> build_optimizer(const optim::OptimizerOptions& options) override;
  std::map<std::string, double> step_metrics() override { return compression_.step_metrics(); }
  std::map<std::string, torch::Tensor> checkpoint_state() override { return compression_.checkpoint_state(); }
  void load_checkpoint_state(const std::map<std::string, torch::Tensor>& state) override {
    compression_.load_checkpoint_state(state);
  }
  models::BundledModel& model() { return *model_; }

 private:
  models::Batch to_device(models::Batch b) const;

  const ProcessGroups& groups_;
  std::shared_ptr<models::BundledModel> model_;
  torch::Device device_;
  DataParallelEngineOptions options_;
  std::unique_ptr<DistributedDataParallel> ddp_;
  parallel::TpShards tp_;
  parallel::GradientCompression compression_;
};

}  // namespace paratorch::parallel
