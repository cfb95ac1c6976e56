// src/parallel/pipeline/pipeline_engine.h — Engine for pipeline parallelism (pp > 1),
// in any combination with data parallelism.
//
// Every rank builds the whole model from the layout-independent
// initialization (so its stage equals the reference's layers), cuts the
// blocks into pp * virtual_stages stages (parallel/pipeline/partition.h), keeps the
// parameters of its own chunks and frees the rest. A step runs the
// schedule's action list (parallel/pipeline/executor.h) over the rank's dp slice of
// the global batch, cut into `microbatches` pieces; each piece's loss is
// scaled by 1/microbatches, so after the dp average the gradients are those
// of the global-batch mean loss. Then:
//   1. tied weights (gpt: transformer.wte.weight, used by the embedding on
//      the first stage and by the head on the last) have a copy on both
//      ends; their gradients are summed over the embedding group (Megatron-LM,
//      Shoeybi et al. 2019), so both copies take identical steps;
//   2. every gradient is averaged over the stage's dp replicas. Each model
//      chunk has a DDP Reducer over the dp group (pipeline_dp_overlap.cpp):
//      no_sync for every backward of the chunk but its last in the
//      schedule, during which its buckets are all-reduced as their
//      gradients become final, overlapping the rest of the backward
//      (PyTorch DDP's bucketing, Li et al. 2020; as Megatron-LM's
//      overlapped gradient reduction).
// The dp average runs first: the sums of 1. and of the tp partial gradients
// below are linear, so they commute with it.
// Naive model parallelism is the m = 1 case.
//
// Mixed precision ([train] precision = bf16 | fp16) composes in through
// mixed_precision::MixedPrecision, as in the data-parallel engine: each
// stage's model computes in the low precision (activations cross stage
// boundaries in it) while fp32 masters of the stage's parameters are what
// the optimizer trains. The reducers keep fp32 main gradients
// (DDPOptions::main_grad_dtype), so micro-batches accumulate and the dp
// average runs in fp32, overlapped as above; steps 1-2, clipping and the
// optimizer see the masters (the optimizer rounds them into the model after
// each update). fp16 adds the dynamic loss scaler; its skip verdict is
// agreed over the whole world, so every stage and replica skips together.
// Losses are computed in fp32.
//
// With tp > 1 (pp × tp, and dp × pp × tp: Megatron-LM's 3D layout, Narayanan
// et al. 2021) the model is built with the tp group (make_model with a
// TensorParallelContext), so each block holds this rank's shards and runs
// its own tp collectives; every tp rank of a stage runs the same schedule,
// and the pp group (same dp and tp coordinates) pairs tp rank r of one
// stage with tp rank r of the next. Before step 1, sequence-parallel partial
// gradients are summed over tp. Whole tensors (checkpoints, verify) are
// gathered over tp on the owning stage, then broadcast over pp
// (pipeline_state.cpp).
#pragma once
#include "parallel/pipeline/executor.h"
#include "parallel/pipeline/partition.h"
#include "parallel/engine.h"
#include "parallel/tensor_parallel/tp_shards.h"
#include "parallel/mixed_precision/mixed_precision.h"
#include <paratorch/layout.h>
#include <paratorch/pipeline.h>

#include <memory>
#include <set>

namespace paratorch {
class Reducer;  // parallel/ddp/reducer.h
}

namespace paratorch::pipeline {

struct PipelineEngineOptions {
  int64_t global_batch = 32;
  int microbatches = 1;
  PipelineSchedule schedule = PipelineSchedule::kOneFOneB;
  int virtual_stages = 1;
  pipeline::BlockPartition partition;  // by parameters, by time, or at given blocks (pipeline/partition.h)
  bool activation_checkpointing = false;
  int zero = 0;  // 1: ZeRO-1 optimizer per stage, sharded over dp (pipeline_zero.h)
  torch::ScalarType compute_dtype = torch::kFloat;  // kFloat | kBFloat16 | kHalf (masters stay fp32)
  bool loss_scaling = false;       // dynamic loss scaling; make_engine turns it on for fp16
  LossScalerOptions scaler;
  torch::ScalarType reduce_dtype = torch::kFloat;  // dtype of the dp gradient all-reduce
  double bucket_mb = 25.0;                         // dp gradient bucket size (dp > 1)
  uint64_t seed = 1234;
  std::string model_name = "model";  // for messages
  /// Schedule, micro-batch and partition checks that need no model
  /// (UsageError naming the field, PipelineEngineOptions::...); the block
  /// count is checked at construction.
  void validate(const Layout& layout) const;
};

class PipelineEngine : public parallel::Engine {
 public:
  /// Collective over the world (measures block times for PartitionBy::kTime
  /// on world rank 0 and broadcasts them).
  PipelineEngine(const ProcessGroups& groups, std::shared_ptr<models::BundledModel> model,
                 const data::Dataset& dataset, torch::Device device, PipelineEngineOptions options);

  optim::NamedTensors named_parameters() override;
  parallel::BatchShare batch_share() const override;
  double forward_backward(const std::vector<models::Batch>& microbatches) override;
  parallel::EvalResult evaluate(const models::Batch& batch) override;
  parallel::SumAcross grad_norm_across() override;
  double grad_norm() override;
  std::map<std::string, torch::Tensor> full_parameters() override;
  void load_full_parameters(const std::map<std::string, torch::Tensor>& tensors) override;
  std::map<std::string, torch::Tensor> full_optimizer_state(const std::map<std::string, torch::Tensor>& local) override;
  std::optional<std::vector<formats::Piece>> checkpoint_pieces(const optim::Optimizer& optimizer) override;
  formats::ShardPlan parameters_to_load() override;
  int64_t parameter_count() override { return parameter_count_; }
  /// This stage's parameters (tp shards, tied copies included): what the rank holds.
  int64_t local_parameter_count() override;
  std::string describe() override;
  std::map<std::string, double> step_metrics() override;
  std::map<std::string, torch::Tensor> checkpoint_state() override;
  void load_checkpoint_state(const std::map<std::string, torch::Tensor>& state) override;
  std::unique_ptr<optim::Optimizer> build_optimizer(const optim::OptimizerOptions& options) override;

  const pipeline::Partition& partition() const { return partition_; }
  const pipeline::Executor& executor() const { return *executor_; }
  /// dp gradient buckets over this rank's chunks (0: no overlapped reduction,
  /// i.e. dp = 1) and the bucket all-reduces launched so far.
  size_t dp_buckets() const;
  int64_t dp_reductions_launched() const;
  /// The same, of the one chunk reducer that reduces parameter `name` (-1: none does).
  int64_t dp_reductions_launched(const std::string& name) const;

 private:
  void choose_partition(const std::vector<models::ModelBlock>& blocks);
  std::vector<pipeline::BoundarySpec> boundary_specs(const std::vector<models::ModelBlock>& blocks);
  void keep_own_parameters(const std::vector<models::ModelBlock>& blocks, const pipeline::PipelineShape& shape);
  void reduce_gradients();
  /// One flat all-reduce averaging `grads` over dp (the post-schedule path).
  void average_over_dp(const std::vector<torch::Tensor>& grads);
  /// dp > 1: a Reducer per chunk, driven by the executor's backwards
  /// (pipeline_dp_overlap.cpp).
  void overlap_dp_reduction(const std::vector<pipeline::StageChunk>& chunks);
  /// Before a step: every chunk's reducer out of sync, launches counted.
  void begin_dp_reduction();
  /// Held parameters whose dp average the reducers did not take this step.
  std::vector<std::string> not_reduced_by_reducers() const;
  /// The held parameters' precision component (fp32 masters in mixed
  /// precision); boundaries carry the compute dtype.
  void set_precision(std::vector<pipeline::BoundarySpec>& boundaries);
  /// What the optimizer trains for parameter `name`: its fp32 master in
  /// mixed precision, else the model's parameter.
  torch::Tensor trained(const std::string& name);
  /// The loss scaler's verdict, the same on every rank of the world.
  bool may_step();
  /// Sequence-parallel partial sums over tp and tied copies' sums (parallel/finalize_grads.h).
  void finalize_gradients();
  /// Parameter `name` as a whole CPU tensor on every rank (collective: tp
  /// gather on the owner's stage, then pp broadcast from the owner).
  torch::Tensor gather_whole(const std::string& name, const torch::Tensor& on_owner);
  /// This rank's held parameters (owned and tied copies) by name, as trained.
  optim::NamedTensors held_parameters();

  const ProcessGroups& groups_;
  std::shared_ptr<models::BundledModel> model_;
  const data::Dataset& dataset_;
  torch::Device device_;
  PipelineEngineOptions options_;
  pipeline::Partition partition_;
  std::unique_ptr<pipeline::Executor> executor_;
  std::vector<std::string> order_;                    // every parameter name, model order
  std::map<std::string, std::vector<int64_t>> shapes_;  // full (whole-model) shapes
  std::map<std::string, std::vector<int64_t>> shard_shapes_;  // this tp rank's shapes (= shapes_ at tp = 1)
  parallel::TpShards tp_;                             // how each parameter splits over tp
  std::map<std::string, torch::ScalarType> dtypes_;
  std::map<std::string, int> owner_;                  // pipeline rank owning each parameter
  std::map<std::string, torch::Tensor> params_;       // the model's parameters by full name
  std::vector<std::string> held_;                     // this rank's parameters (owned + tied copies)
  std::set<std::string> tied_copies_;                 // held here, owned by another stage
  std::set<std::string> tied_;                        // held on both ends (owner's view too)
  int64_t parameter_count_ = 0;
  torch::ScalarType dtype_ = torch::kFloat;  // compute dtype
  std::unique_ptr<mixed_precision::MixedPrecision> precision_;  // off in fp32
  struct ChunkReducer {
    std::shared_ptr<Reducer> reducer;  // null where the chunk trains no parameter
    std::vector<std::string> names;    // the held parameters it reduces
    int64_t launched_before_step = 0;
  };
  std::vector<ChunkReducer> reducers_;  // index = chunk; empty: post-schedule path
};

}  // namespace paratorch::pipeline
