// src/parallel/ddp/data_parallel_engine.h — Engine for dp replicas of a model
// (pp = 1, no ZeRO), each replica whole or split over tp, in fp32 or mixed precision.
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
//
// Mixed precision composes in the same way, through mixed_precision::MixedPrecision
// (the pipeline engine holds the same component): the model computes in
// bf16/fp16, DDP keeps fp32 main gradients (DDPOptions::main_grad_dtype), so
// micro-batches accumulate and replicas average at fp32 while backward goes
// on, and the optimizer trains fp32 masters whose .grad are those main
// gradients. fp16 scales the loss and skips a step with inf/NaN anywhere.
#pragma once
#include "parallel/compression/gradient_compression.h"
#include "parallel/engine.h"
#include "parallel/mixed_precision/mixed_precision.h"
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
  /// PowerSGD or 1-bit Adam over the replicas' exchange (tp = 1, fp32 only).
  parallel::CompressionOptions compression;
  /// The model computes in kFloat, kBFloat16 or kHalf (masters stay fp32).
  torch::ScalarType compute_dtype = torch::kFloat;
  /// Dynamic loss scaling; on for fp16 (make_engine), available to any precision for tests.
  bool loss_scaling = false;
  LossScalerOptions scaler;
  /// dtype the dp gradient reductions run in (kFloat | kBFloat16 | kHalf): a
  /// 16-bit reduction rounds each rank's gradient before it and the result after it.
  torch::ScalarType reduce_dtype = torch::kFloat;
  /// UsageError naming the field (DataParallelEngineOptions::...) and what to change.
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
  double grad_norm() override;
  std::map<std::string, torch::Tensor> full_parameters() override;
  void load_full_parameters(const std::map<std::string, torch::Tensor>& tensors) override;
  std::optional<std::vector<formats::Piece>> checkpoint_pieces(const optim::Optimizer& optimizer) override;
  formats::ShardPlan parameters_to_load() override;
  int64_t parameter_count() override;
  std::string describe() override;
  std::unique_ptr<optim::Optimizer> build_optimizer(const optim::OptimizerOptions& options) override;
  std::map<std::string, double> step_metrics() override;
  std::map<std::string, torch::Tensor> checkpoint_state() override;
  void load_checkpoint_state(const std::map<std::string, torch::Tensor>& state) override;
  models::BundledModel& model() { return *model_; }
  double loss_scale() const { return precision_->scale(); }
  int64_t skipped_steps() const { return precision_->skipped_steps(); }

 private:
  /// The model's own parameters (in the compute dtype), by name.
  optim::NamedTensors model_parameters() const;
  /// The loss scaler's verdict, the same on every rank of the replica set.
  bool may_step();

  const ProcessGroups& groups_;
  std::shared_ptr<models::BundledModel> model_;
  torch::Device device_;
  DataParallelEngineOptions options_;
  std::unique_ptr<mixed_precision::MixedPrecision> precision_;  // off in fp32
  std::unique_ptr<DistributedDataParallel> ddp_;
  parallel::TpShards tp_;
  parallel::GradientCompression compression_;
};

}  // namespace paratorch::parallel
