// src/parallel/zero/sharded_optimizer.h — the project's AdamW / SGD on ZeRO shards.
//
// ZeRO stage 1 (Rajbhandari et al., 2019, §5.1) partitions the optimizer
// state: each dp rank keeps Adam's m and v (or SGD's momentum) only for its
// shard of every flat buffer and updates only its shard of the fp32 master
// parameters. The update itself is the ordinary optimizer (optimizer.h) run
// on "pieces": for every parameter overlapping this rank's shard, a 1-D view
// of that overlap in the master shard, whose .grad is the same overlap of the
// gradient shard. Weight decay follows the *parameter's* shape (dim >= 2),
// not the piece's.
//
// Checkpoints hold full tensors: state_tensors() all-gathers each state kind
// over the dp group and returns "<param>.exp_avg" etc. at the parameter's own
// shape, exactly what an unsharded optimizer writes, so a ZeRO checkpoint
// resumes in any layout and a dp checkpoint resumes under ZeRO.
#pragma once
#include "optim/optimizer.h"
#include "parallel/zero/flat_buffer.h"
#include <paratorch/communicator.h>

#include <functional>
#include <memory>

namespace paratorch::zero {

/// One flat buffer's shard: fp32 master values and gradient (shard_numel() each).
struct ShardUnit {
  const FlatLayout* layout = nullptr;
  torch::Tensor master;
  torch::Tensor grad;
};

/// The pieces of `units` by parameter name (each with .grad set), and their decay flags.
struct Pieces {
  optim::NamedTensors tensors;
  std::vector<bool> decay;
};
Pieces make_pieces(const std::vector<ShardUnit>& units);

class ShardedOptimizer final : public optim::Optimizer {
 public:
  /// `group`: the dp communicator the shards are split over (null when a
  /// unit has one shard). `may_step`, when set, is asked before each update
  /// and a false answer skips it (the fp16 loss scaler); `after_step`
  /// publishes the updated masters (all-gather into the model).
  ShardedOptimizer(const optim::OptimizerOptions& options, std::vector<ShardUnit> units, const Pieces& pieces,
                   std::shared_ptr<Communicator> group, std::function<bool()> may_step,
                   std::function<void()> after_step);

  void step(double lr, double grad_scale = 1.0) override;
  std::map<std::string, torch::Tensor> state_tensors() const override;
  void load_state_tensors(const std::map<std::string, torch::Tensor>& state) override;
  /// This rank's state tensors (its pieces only): what it holds in memory.
  std::map<std::string, torch::Tensor> local_state_tensors() const { return inner_->state_tensors(); }
  /// This rank's pieces of each state kind, at their offsets in the
  /// parameters, plus "step": nothing gathered.
  std::vector<optim::LocalState> local_state() const override;

 private:
  std::vector<std::string> kinds_;  // "exp_avg", "exp_avg_sq" | "momentum_buffer"
  std::vector<ShardUnit> units_;
  std::shared_ptr<Communicator> group_;
  std::function<bool()> may_step_;
  std::function<void()> after_step_;
  std::unique_ptr<optim::Optimizer> inner_;
};

/// Full tensors of every parameter of `unit` from the shards of `shard`
/// (one per rank), gathered over `group` (null: one shard).
std::map<std::string, torch::Tensor> gather_full(const FlatLayout& layout, const torch::Tensor& shard,
                                                 Communicator* group);

}  // namespace paratorch::zero
