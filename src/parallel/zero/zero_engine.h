// src/parallel/zero/zero_engine.h — Engine for ZeRO stages 1–3 (in fp32 or mixed precision).
//
// ZeRO (Rajbhandari et al., 2019) removes the redundancy of data parallelism
// by sharding model state over the dp group (ProcessGroups::dp(), so it
// composes with pp/tp later: each model-parallel shard is ZeRO'd across its
// own dp group). Model state lives in flat buffers ("units", parallel/zero/flat_buffer.h)
// and each rank owns 1/N of every unit:
//   stage 1  optimizer state + fp32 master shard; gradients reduce-scattered
//            (full fp32 gradient buffer kept, micro-batches accumulated in
//            it, only this rank's shard reduced, in place, by the reducer
//            with the last micro-batch's backward), each
//            rank updates its shard, then the parameters are all-gathered —
//            on one node stages 1-2 keep one parameter copy that every rank
//            maps, so the update lands in place and a barrier publishes it.
//   stage 2  also gradients: units are DDP-sized buckets (bucket_mb) in
//            backward order; DDP's gradient reducer in its reduce-scatter mode
//            (parallel/ddp/reducer.h) reduce-scatters each as soon as its
//            gradients are final, on the communication thread while backward
//            goes on, and only this rank's shard of the gradient is kept.
//            Stages 1-2's buffers, gradient path and publication are
//            zero::FlatShards (flat_shards.h), the public
//            ZeroRedundancyOptimizer's too; the engine adds the trainer's
//            optimizer over the shards' pieces, the loss scaler and tp.
//   stage 3  also parameters: units are the model's blocks (BundledModel::blocks).
//            A block's parameters are all-gathered just before its forward and
//            freed after; the forward keeps only the blocks' inputs. Backward
//            walks the blocks in reverse: all-gather again, recompute the block
//            with autograd (activation checkpointing), backward through it,
//            reduce-scatter its gradients into the owner's shard, free. The
//            next block's gather is issued before the current block computes.
//            The blocks run through fully_shard's driver (fsdp_state.h), as
//            its units over the engine's master shards; tied weights (gpt's
//            wte and output head) form one more unit, as in fully_shard.
// Stage 0 (nothing sharded) is DataParallelEngine, in any precision.
// Mixed precision ([train] precision = bf16 | fp16): the model computes in
// the low precision; masters, optimizer state and gradient reduction are
// fp32; fp16 multiplies the loss by a dynamic scale (parallel/zero/loss_scaler.h) and
// skips the step when a gradient is inf/NaN.
// The trainer sees only pieces of the master shard (named_parameters) and the
// ShardedOptimizer (build_optimizer); clipping sums shard norms over dp.
// Tensor parallelism composes in through parallel::TpShards, as in every
// engine: with a model built with the tp group the units hold this rank's tp
// shards, sharded over the dp group only, so each model-parallel shard is
// ZeRO'd across its own dp replicas (ZeRO paper §7, with Megatron-LM). The tp
// ranks of one replica have identical unit layouts (same names, same shard
// shapes), so their pieces pair up for the sequence-parallel partial sums
// (the dp average and the tp sum commute, both linear), the norm, and the
// whole tensors (gathered over dp as at tp = 1, then over tp).
#pragma once
#include "parallel/engine.h"
#include "parallel/tensor_parallel/tp_shards.h"
#include "parallel/zero/flat_shards.h"
#include "parallel/zero/loss_scaler.h"
#include "parallel/mixed_precision/precision.h"
#include "parallel/zero/sharded_optimizer.h"

#include <memory>

namespace paratorch {
struct FsdpState;  // parallel/zero/fsdp_state.h
}

namespace paratorch::zero {

struct ZeroEngineOptions {
  int stage = 1;                                    // 1..3
  torch::ScalarType compute_dtype = torch::kFloat;  // kFloat | kBFloat16 | kHalf (masters stay fp32)
  int64_t global_batch = 32;
  int microbatches = 1;
  double bucket_mb = 25.0;  // stages 1-2: gradient unit size
  uint64_t seed = 1234;
  /// Dynamic loss scaling; on for fp16 (make_engine), available to any precision for tests.
  bool loss_scaling = false;
  zero::LossScalerOptions scaler;
  /// dtype the dp gradient reductions run in (kFloat | kBFloat16 | kHalf): a
  /// 16-bit reduction rounds each rank's gradient before it and the result after it.
  torch::ScalarType reduce_dtype = torch::kFloat;
  /// Stage 3: hand the heap's freed pages back to the OS (glibc malloc_trim)
  /// after each block's forward and backward and before each large gradient
  /// is accumulated, so a block's transients do not stay resident. Lowers
  /// peak resident memory (bench/zero, dp = 4: 577 -> 501 MiB), but each
  /// block then page-faults its memory back in: on a virtual machine with
  /// costly page faults stage 3 ran 6.4x slower with it (docs/zero.md).
  bool release_freed_memory = false;
  /// UsageError naming the field (ZeroEngineOptions::...) and what to change.
  void validate(int dp) const;
};

/// Bytes this rank holds for each kind of model state (the bench's measure).
struct ModelStateBytes {
  int64_t parameters = 0, gradients = 0, optimizer = 0;
  int64_t total() const { return parameters + gradients + optimizer; }
};

class ZeroEngine : public parallel::Engine {
 public:
  ZeroEngine(const ProcessGroups& groups, std::shared_ptr<models::BundledModel> model, torch::Device device,
             ZeroEngineOptions options);
  ~ZeroEngine() override;

  optim::NamedTensors named_parameters() override { return pieces_.tensors; }
  parallel::BatchShare batch_share() const override;
  double forward_backward(const std::vector<models::Batch>& microbatches) override;
  parallel::EvalResult evaluate(const models::Batch& batch) override;
  parallel::SumAcross grad_norm_across() override;
  std::map<std::string, torch::Tensor> full_parameters() override;
  void load_full_parameters(const std::map<std::string, torch::Tensor>& tensors) override;
  std::optional<std::vector<formats::Piece>> checkpoint_pieces(const optim::Optimizer& optimizer) override;
  formats::ShardPlan parameters_to_load() override;
  int64_t parameter_count() override;
  int64_t local_parameter_count() override;
  std::string describe() override;
  std::unique_ptr<optim::Optimizer> build_optimizer(const optim::OptimizerOptions& options) override;
  std::map<std::string, double> step_metrics() override;
  std::map<std::string, torch::Tensor> checkpoint_state() override;
  void load_checkpoint_state(const std::map<std::string, torch::Tensor>& state) override;

  /// Parameters, gradients and optimizer state this rank holds now.
  ModelStateBytes model_state_bytes() const;
  double loss_scale() const { return scaler_.scale(); }
  int64_t skipped_steps() const { return scaler_.skipped_steps(); }

 private:
  struct Unit;

  void build_flat_shards();
  void publish_parameters();
  bool may_step();
  void unscale_gradients();
  /// The model's criterion of `output` widened to fp32 (losses are computed in fp32).
  torch::Tensor fp32_loss(const torch::Tensor& output, const models::Batch& batch) const;
  int shard_ranks() const;

  // stage 3 (zero_engine_stage3.cpp)
  /// Each unit's members (indices into params_): one unit per block, of the
  /// parameters it owns but the tied ones; the tied ones in one more unit.
  std::vector<std::vector<size_t>> stage3_members() const;
  /// One unit per member list, initialized and sharded one at a time.
  void build_stage3_units();
  void build_fsdp();
  double forward_backward_blocks(const models::Batch& batch, int microbatches);
  torch::Tensor forward_blocks(const torch::Tensor& input);

  const ProcessGroups& groups_;
  std::shared_ptr<models::BundledModel> model_;
  torch::Device device_;
  ZeroEngineOptions options_;
  torch::ScalarType dtype_;               // model compute precision
  torch::ScalarType reduce_dtype_;        // dp gradient reductions ([train] reduce_precision)
  std::vector<torch::Tensor> params_;     // the model's, in model order
  std::vector<std::string> names_;
  std::vector<std::unique_ptr<Unit>> units_;
  zero::Pieces pieces_;
  zero::LossScaler scaler_;
  const zero::ShardedOptimizer* optimizer_ = nullptr;
  parallel::TpShards tp_;                 // every parameter's tp split, and the tp group
  // stages 1-2: the flat buffers and DDP's gradient reducer (flat_shards.h)
  std::unique_ptr<zero::FlatShards> flat_;
  // stage 3: the model's blocks, run as fully sharded units by the one
  // stage-3 driver fully_shard has too (fsdp_state.h)
  std::vector<models::ModelBlock> blocks_;
  std::shared_ptr<FsdpState> fsdp_;
};

}  // namespace paratorch::zero
