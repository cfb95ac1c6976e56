// src/parallel/async/ps_engine.h — the bulk-synchronous parameter server (staleness 0)
// as an Engine, so `paratorch verify` checks it step by step against the
// single-process reference through make_engine, like every other layout.
//
// Every forward_backward is one BSP round: each worker pulls the changed
// shards, computes its 1/W slice of the global batch and pushes the
// gradient; each server leaves the mean of the W pushes in .grad of its
// shard. The parameters an optimizer steps are the servers' shards: on a
// server named_parameters() is its pieces (keys "name" or "name@rowsA-B"),
// on a worker nothing; grad_norm_across() sums the shards' squares over the
// world. So train::take_step clips the global norm and steps the servers'
// shards at the caller's lr, as for every other layout, and
// full_parameters() is the shards after the last update.
//
// `paratorch train` with staleness 0 runs this engine too, through the
// Trainer's loop (the same path verify checks): its checkpoints hold whole
// tensors by parameter name — full_optimizer_state() assembles the servers'
// optimizer state, and the optimizer build_optimizer() returns loads such a
// state back into each server's pieces — so a bulk-synchronous run resumes
// in any layout, and any layout's checkpoint resumes here.
#pragma once
#include "parallel/async/ps_server.h"
#include "parallel/async/ps_worker.h"
#include "parallel/engine.h"

namespace paratorch::async {

struct PsEngineOptions {
  int servers = 1;        // world ranks [0, servers) hold the shards; the rest are workers
  uint64_t seed = 1234;   // the model's layout-independent initialization
  int64_t steps = 100;    // rounds the servers expect
  double timeout_s = 300; // deadline of every pull, push and round
  /// UsageError naming the field when servers < 1 or not below `world_size`,
  /// steps < 1 or timeout_s <= 0.
  void validate(int world_size) const;
};

class PsEngine : public parallel::Engine {
 public:
  PsEngine(PsEngineOptions options, const ProcessGroups& groups, std::shared_ptr<models::BundledModel> model);

  optim::NamedTensors named_parameters() override;
  /// Workers: worker w of W takes the w-th slice; servers compute none.
  parallel::BatchShare batch_share() const override;
  /// Every rank evaluates the whole validation batch on the servers' parameters.
  parallel::BatchShare validation_share() const override { return {0, 1, 1}; }
  double forward_backward(const std::vector<models::Batch>& microbatches) override;
  parallel::EvalResult evaluate(const models::Batch& batch) override;
  parallel::SumAcross grad_norm_across() override;
  std::map<std::string, torch::Tensor> full_parameters() override;
  void load_full_parameters(const std::map<std::string, torch::Tensor>& tensors) override;
  int64_t parameter_count() override;
  std::string describe() override;
  std::unique_ptr<optim::Optimizer> build_optimizer(const optim::OptimizerOptions& options) override;
  std::map<std::string, torch::Tensor> full_optimizer_state(const std::map<std::string, torch::Tensor>& local) override;

 private:
  std::shared_ptr<Communicator> world_;
  std::shared_ptr<models::BundledModel> model_;
  int servers_, workers_;
  ShardPlan plan_;
  std::unique_ptr<Server> server_;  // on ranks [0, servers)
  std::unique_ptr<Worker> worker_;  // on the others
  int64_t step_ = 0;
  std::vector<std::string> state_kinds_;  // the optimizer's per-parameter state ("exp_avg", ...)
};

}  // namespace paratorch::async
