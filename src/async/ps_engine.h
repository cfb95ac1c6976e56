// src/async/ps_engine.h — the bulk-synchronous parameter server (staleness 0)
// as an Engine, so `paratorch verify` checks it step by step against the
// single-process reference through make_engine, like every other layout.
//
// Every forward_backward is one BSP round: each worker pulls the changed
// shards, computes its 1/W slice of the global batch and pushes the
// gradient; each server applies the mean of the W pushes as one optimizer
// step (ps_server.h). So the optimizer runs on the servers: this engine's
// named_parameters() is empty and the caller's optimizer has nothing to do;
// the servers step at the learning rate of [optim] lr and warm-up/cosine
// schedule over [train] steps, counting rounds from 0 (LrSchedule), and clip
// each pushed gradient by [optim] grad_clip (equal to clipping the mean only
// when the clip does not bind). full_parameters() is the servers' shards,
// i.e. the parameters after the last update.
#pragma once
#include "async/ps_server.h"
#include "async/ps_worker.h"
#include "train/engine.h"

namespace paratorch::async {

class PsEngine : public train::Engine {
 public:
  PsEngine(const train::Config& config, const ProcessGroups& groups, std::shared_ptr<models::BundledModel> model,
           const data::Dataset& dataset);

  train::NamedTensors named_parameters() override { return {}; }
  double forward_backward(const std::vector<int64_t>& ids) override;
  train::EvalResult evaluate(const std::vector<int64_t>& ids) override;
  train::SumAcross grad_norm_across() override { return nullptr; }
  std::map<std::string, torch::Tensor> full_parameters() override;
  void load_full_parameters(const std::map<std::string, torch::Tensor>& tensors) override;
  int64_t parameter_count() override;
  std::string describe() override;

 private:
  std::shared_ptr<Communicator> world_;
  std::shared_ptr<models::BundledModel> model_;
  const data::Dataset& dataset_;
  int servers_, workers_;
  ShardPlan plan_;
  std::unique_ptr<Server> server_;  // on ranks [0, servers)
  std::unique_ptr<Worker> worker_;  // on the others
  int64_t step_ = 0;
};

}  // namespace paratorch::async
