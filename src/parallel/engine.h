// src/parallel/engine.h — the layout-specific half of a training step.
//
// The Trainer owns the loop (schedule, clipping, optimizer, logging,
// checkpoints); an Engine owns how the model is split over ranks and how
// gradients meet. Data parallelism is one engine; pipeline, tensor-parallel
// and ZeRO layouts are others. The loop never branches on the layout.
#pragma once
#include "data/dataset.h"
#include "formats/sharded_checkpoint.h"
#include "parallel/grad_clip.h"
#include "optim/optimizer.h"
#include <paratorch/layout.h>

#include <torch/torch.h>

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace paratorch::parallel {

struct EvalResult {
  double loss = 0;
  double accuracy = -1;  // classification models, else -1
};

/// Which share of a global batch a rank computes: replica `replica` of
/// `replicas` takes the replica-th contiguous slice (DistributedSampler's
/// rule), cut in order into `microbatches` equal pieces. The ranks of one
/// replica (its pipeline stages, its tp shards) share its slice; replica < 0
/// computes none (a parameter server).
struct BatchShare {
  int replica = 0;
  int replicas = 1;
  int microbatches = 1;
};

class Engine {
 public:
  virtual ~Engine() = default;
  /// Parameters this rank updates (what the optimizer gets), by model name.
  virtual optim::NamedTensors named_parameters() = 0;
  /// The share of each global batch this rank computes (local_microbatches).
  virtual BatchShare batch_share() const = 0;
  /// The share of a validation batch this rank evaluates (one piece);
  /// default: batch_share()'s slice.
  virtual BatchShare validation_share() const { return {batch_share().replica, batch_share().replicas, 1}; }
  /// Forward and backward of this rank's micro-batches of one global batch
  /// (batch_share()'s slice, in order; local_microbatches reads them). On
  /// return every parameter's .grad holds its gradient of the mean loss over
  /// the whole global batch; returns that mean loss (same on every rank).
  virtual double forward_backward(const std::vector<models::Batch>& microbatches) = 0;
  /// Mean validation loss (and accuracy) over the whole validation batch,
  /// every rank, given this rank's piece of it (local_validation_batch).
  virtual EvalResult evaluate(const models::Batch& batch) = 0;
  /// Adds the other shards' squared gradient norms (for clipping).
  virtual SumAcross grad_norm_across() = 0;
  /// The whole model's gradient L2 norm, on every rank (what the step clips
  /// by). The default reads every gradient of named_parameters() and adds
  /// grad_norm_across(); engines whose replicas hold equal gradients split
  /// the reading instead (grad_norm.h's NormGroups::replicas).
  virtual double grad_norm();
  /// Every parameter as a full tensor under its model name, on every rank.
  virtual std::map<std::string, torch::Tensor> full_parameters() = 0;
  /// The inverse of full_parameters (each rank keeps its part).
  virtual void load_full_parameters(const std::map<std::string, torch::Tensor>& tensors) = 0;
  /// The optimizer state of the whole model on every rank, given this rank's
  /// (`local`, Optimizer::state_tensors()). Collective. Checkpoints need it
  /// when ranks update different parameters (pipeline stages); the default
  /// suits engines whose every rank updates every parameter. Loading needs
  /// no inverse: Optimizer::load_state_tensors picks its own names.
  virtual std::map<std::string, torch::Tensor> full_optimizer_state(const std::map<std::string, torch::Tensor>& local) {
    return local;
  }
  /// This rank's pieces of a sharded checkpoint: what it holds of the
  /// parameters and of `optimizer`'s state (Optimizer::local_state), each
  /// element of the world's state written by one rank, no communication
  /// (parallel/checkpoint/checkpoint_pieces.h). nullopt: this engine cannot say, and
  /// the trainer gathers whole tensors instead and spreads their writing.
  virtual std::optional<std::vector<formats::Piece>> checkpoint_pieces(const optim::Optimizer& /*optimizer*/) {
    return std::nullopt;
  }
  /// The parameters (by model name) load_full_parameters reads on this rank,
  /// each with its tp shard, so a resume reads only those (and of each only
  /// the shard, where the checkpoint is split the same way); empty: all.
  virtual formats::ShardPlan parameters_to_load() { return {}; }
  /// Number of parameters of the whole model.
  virtual int64_t parameter_count() = 0;
  /// Parameters of this rank's model-parallel shard before ZeRO sharding
  /// (tp shards count 1/tp): what the start-up memory estimate divides over
  /// dp. ZeRO × tp needs it; default: the whole model.
  virtual int64_t local_parameter_count() { return parameter_count(); }
  /// One line for the start-up report.
  virtual std::string describe() = 0;

  // Defaulted hooks (ZeRO's needs) so other engines compile unchanged.
  /// The optimizer over named_parameters(). Engines that shard the optimizer
  /// state (ZeRO) return their own: it updates shards, publishes the updated
  /// parameters after each step, and still saves and loads full tensors.
  virtual std::unique_ptr<optim::Optimizer> build_optimizer(const optim::OptimizerOptions& options) {
    return optim::make_optimizer(options, named_parameters());
  }
  /// Extra numbers for metrics.jsonl at each logged step (e.g. loss_scale, skipped_steps).
  virtual std::map<std::string, double> step_metrics() { return {}; }
  /// State a checkpoint carries besides parameters and optimizer state (the
  /// fp16 loss scaler's: parallel/zero/loss_scaler.h), equal on every rank; and back.
  virtual std::map<std::string, torch::Tensor> checkpoint_state() { return {}; }
  virtual void load_checkpoint_state(const std::map<std::string, torch::Tensor>& /*state*/) {}
};

/// This rank's micro-batches of the global batch `global_ids` (sample ids, in
/// order), read from `dataset`: engine.batch_share()'s slice, cut in order.
/// UsageError when the batch does not divide over the replicas and their
/// micro-batches. Empty for a rank that computes no share.
std::vector<models::Batch> local_microbatches(const Engine& engine, const data::Dataset& dataset,
                                              const std::vector<int64_t>& global_ids);

/// This rank's piece of the validation batch `global_ids` (validation_share()).
models::Batch local_validation_batch(const Engine& engine, const data::Dataset& dataset,
                                     const std::vector<int64_t>& global_ids);

/// Every engine's evaluation of a model output: the model's criterion on the
/// output widened to fp32 (losses are fp32 in every precision) and, when
/// `batch` holds class labels, the fraction predicted right (else -1).
EvalResult score_output(models::BundledModel& model, const torch::Tensor& output, const models::Batch& batch);

}  // namespace paratorch::parallel
