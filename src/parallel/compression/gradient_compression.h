// src/parallel/compression/gradient_compression.h — the data-parallel
// engine's compressor component: PowerSGD (a DDP comm hook) or 1-bit Adam
// (an optimizer that takes over the exchange), and the per-rank state they
// carry into checkpoints. With kind kNone every member is the identity.
// (16-bit wire formats are the reduce dtype of the ZeRO and pipeline
// engines: comm_hooks::bf16_compress / fp16_compress.)
//
// Checkpoints hold whole tensors written by one rank, but error feedback is
// each rank's own: checkpoint_state() stacks every dp rank's state under
// "dp_ranks.<key>" (row r: dp rank r), and each rank loads its own row.
#pragma once
#include "optim/optimizer.h"
#include <paratorch/compression.h>
#include <paratorch/ddp.h>

#include <map>
#include <memory>
#include <string>

namespace paratorch::parallel {

enum class CompressionKind { kNone, kPowerSGD, kOneBitAdam };

struct CompressionOptions {
  CompressionKind kind = CompressionKind::kNone;
  PowerSGDOptions powersgd;
  /// weight_decay comes from the engine's OptimizerOptions.
  OneBitAdamOptions onebit;
  void validate() const;
};

class GradientCompression {
 public:
  GradientCompression(CompressionOptions options, std::shared_ptr<Communicator> dp);
  /// PowerSGD: checks every matrix against the rank, registers the hook.
  void install(DistributedDataParallel& ddp, const optim::NamedTensors& params);
  /// 1-bit Adam over `params` (UsageError naming OptimizerOptions::kind
  /// unless it is AdamW); nullptr for the other kinds (the engine's own).
  std::unique_ptr<optim::Optimizer> make_optimizer(const optim::OptimizerOptions& options, optim::NamedTensors params,
                                                   DistributedDataParallel& ddp);
  /// Collective over dp: every rank's state, stacked (see the header comment).
  std::map<std::string, torch::Tensor> checkpoint_state();
  /// This rank's row; a checkpoint without compressor state leaves it fresh.
  /// UsageError when it was written by another number of dp ranks.
  void load_checkpoint_state(const std::map<std::string, torch::Tensor>& state);
  /// "compressing": 1 when the last step was compressed (metrics.jsonl).
  std::map<std::string, double> step_metrics() const;
  /// For the start-up line; empty for kNone.
  std::string describe() const;

 private:
  std::map<std::string, torch::Tensor> rank_state() const;
  void load_rank_state(const std::map<std::string, torch::Tensor>& state);

  CompressionOptions options_;
  std::shared_ptr<Communicator> dp_;
  std::shared_ptr<PowerSGDState> powersgd_;
  std::weak_ptr<OneBitAdam> onebit_;  // shared with the optimizer make_optimizer returned
};

}  // namespace paratorch::parallel
