// src/train/ps_job.h — what every rank of a `paratorch train` parameter-server
// job (ps_trainer.h) knows: the config, the bundled model and dataset, how
// the parameters split over the servers (ShardPlan), and the learning-rate
// schedule. Server ranks run the training loop over it (ps_server_runner.h);
// worker ranks compute with it (ps_trainer.cpp).
#pragma once
#include "data/dataset.h"
#include "models/registry.h"
#include "optim/lr_schedule.h"
#include "parallel/async/shard_plan.h"
#include "train/config.h"
#include <paratorch/world.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace paratorch::async {

struct Job {
  World& world;
  const train::Config& config;
  int servers = 1, workers = 1;
  std::vector<int64_t> local_pids;  // by world rank: its pid when on this node, else -1
  std::unique_ptr<data::Dataset> dataset;
  std::shared_ptr<models::BundledModel> model;
  std::map<std::string, torch::Tensor> full;  // every parameter's initial value
  ShardPlan plan;
  optim::LrSchedule schedule;

  /// Collective: builds the model and the plan, and learns which ranks share this node.
  Job(World& world, const train::Config& config);
  std::string out(const std::string& file) const { return config.train.out_dir + "/" + file; }
  /// What checkpoints record as the layout that wrote them.
  std::string layout() const;
};

}  // namespace paratorch::async
